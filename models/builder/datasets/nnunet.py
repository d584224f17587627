"""The nnU-Net raw dataset layout (v2, and v1's dataset.json keys), NIfTI files.

    Dataset001_Vessels/
        dataset.json          {"channel_names": {"0": "CT"},
                               "labels": {"background": 0, "vessel": 1},
                               "numTraining": 12, "file_ending": ".nii.gz"}
        imagesTr/<case>_0000.nii.gz   labelsTr/<case>.nii.gz
        imagesTs/<case>_0000.nii.gz   labelsTs/<case>.nii.gz   (test annotations)

The appliance takes one channel, so a dataset with a second channel (``_0001``) is
refused. nnU-Net itself keeps no test labels; a site's test cases need them to be
measured, so ``labelsTs/`` (the common convention) holds them: without that folder the
test images are not used, with it a test image without its label is reported. Every
declared label other than ``background`` (value 0) counts as vessel unless the recipe
names the vessel labels (``SiteDataRecipe.vessel_labels``). Images are read by the
appliance's own NIfTI reader (``operators.nifti.volume.read_nifti_volume``) with its
checks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from models.builder.datasets.cases import (
    READ_BUDGET_BYTES,
    CaseProblem,
    DatasetLayoutError,
    RawCase,
    ReadResult,
    SiteSplit,
    parse_modality,
)
from operators.errors import PipelineError
from operators.nifti.io import read_nifti
from operators.nifti.volume import read_nifti_volume
from synthetic.case import Modality

log = logging.getLogger(__name__)

CHANNEL = "_0000"


def is_nnunet(root: Path) -> bool:
    return (root / "dataset.json").is_file() and (root / "imagesTr").is_dir()


def _declared(root: Path) -> tuple[Modality, dict[int, str], str]:
    path = root / "dataset.json"
    if not path.is_file():
        raise DatasetLayoutError(f"{root}: no dataset.json (nnU-Net raw layout expected)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetLayoutError(f"{path}: not valid JSON: {error}") from error
    channels = meta.get("channel_names") or meta.get("modality")  # v2, v1
    if not isinstance(channels, dict) or not channels:
        raise DatasetLayoutError(f"{path}: no channel_names (or v1 modality) declared")
    if set(channels) != {"0"}:
        raise DatasetLayoutError(
            f"{path}: {len(channels)} channels declared ({sorted(channels)}); the appliance "
            "segments one CT or MR volume, so a dataset needs exactly one channel '0'"
        )
    modality = parse_modality(str(channels["0"]))
    if modality is None:
        raise DatasetLayoutError(
            f"{path}: channel 0 is {channels['0']!r}; the appliance takes CT or MR "
            "(name channel 0 'CT' or 'MR')"
        )
    raw_labels = meta.get("labels")
    if not isinstance(raw_labels, dict) or not raw_labels:
        raise DatasetLayoutError(f"{path}: no labels declared")
    labels: dict[int, str] = {}
    for key, value in raw_labels.items():
        # v2: {"vessel": 1}; v1: {"1": "vessel"}. Region labels (lists) are not ours.
        if isinstance(value, int) and not isinstance(value, bool):
            labels[value] = str(key)
        elif isinstance(value, str) and str(key).isdigit():
            labels[int(key)] = value
        else:
            raise DatasetLayoutError(
                f"{path}: label {key!r}: {value!r} is not a single integer value "
                "(nnU-Net region labels are not supported)"
            )
    if 0 not in labels:
        raise DatasetLayoutError(f"{path}: labels must declare background as 0, got {labels}")
    if len(labels) < 2:
        raise DatasetLayoutError(f"{path}: labels declare no vessel class besides background")
    ending = str(meta.get("file_ending", ".nii.gz"))
    if ending not in (".nii.gz", ".nii"):
        raise DatasetLayoutError(f"{path}: file_ending {ending!r}: only NIfTI is read")
    return modality, labels, ending


def _case_ids(folder: Path, ending: str) -> list[str]:
    ids = []
    for path in sorted(folder.glob(f"*{ending}")):
        stem = path.name[: -len(ending)]
        if not stem.endswith(CHANNEL):
            raise DatasetLayoutError(
                f"{path}: not a channel-0 image (<case>{CHANNEL}{ending}); the appliance "
                "takes one channel"
            )
        ids.append(stem[: -len(CHANNEL)])
    return ids


def _read_case(
    root: Path, split: SiteSplit, case: str, modality: Modality, ending: str
) -> ReadResult:
    images, labels = ("imagesTr", "labelsTr") if split == "train" else ("imagesTs", "labelsTs")
    image_file = root / images / f"{case}{CHANNEL}{ending}"
    label_file = root / labels / f"{case}{ending}"
    source = f"{images}/{image_file.name}"
    if not label_file.is_file():
        return CaseProblem(
            case=case,
            split=split,
            kind="missing-label",
            message=f"{source} has no annotation {labels}/{label_file.name}",
        )
    try:
        volume = read_nifti_volume(image_file, READ_BUDGET_BYTES)
    except PipelineError as error:
        kind = "refused-geometry" if error.reason == "bad-geometry" else "unreadable"
        return CaseProblem(case=case, split=split, kind=kind, message=error.message)
    try:
        label, label_geometry = read_nifti(label_file)
    except (ValueError, OSError, EOFError) as error:
        return CaseProblem(
            case=case,
            split=split,
            kind="unreadable",
            message=f"{labels}/{label_file.name}: cannot read NIfTI label: {error}",
        )
    if not np.issubdtype(label.dtype, np.integer) and not np.array_equal(label, np.round(label)):
        return CaseProblem(
            case=case,
            split=split,
            kind="label-values",
            message=f"{labels}/{label_file.name} holds non-integer values: labels are classes",
        )
    return RawCase(
        name=case,
        split=split,
        modality=modality,
        image=volume.voxels,
        image_geometry=volume.geometry,
        label=np.rint(label).astype(np.int32),
        label_geometry=label_geometry,
        source=source,
    )


def read_nnunet(root: Path) -> tuple[list[ReadResult], dict[int, str]]:
    """Every case of the dataset (train and test) and the declared labels."""
    modality, labels, ending = _declared(root)
    results: list[ReadResult] = []
    for split, folder in (("train", "imagesTr"), ("test", "imagesTs")):
        if not (root / folder).is_dir():
            if split == "train":
                raise DatasetLayoutError(f"{root}: no imagesTr/ folder")
            continue
        if split == "test" and not (root / "labelsTs").is_dir():
            # nnU-Net's own convention: test images to predict, no labels. Nothing to
            # measure them against, so they are not used (a missing single label, with
            # labelsTs/ present, is a problem of that case).
            log.warning("%s: imagesTs/ without labelsTs/: test images not used", root.name)
            continue
        for case in _case_ids(root / folder, ending):
            results.append(_read_case(root, split, case, modality, ending))  # type: ignore[arg-type]
    if not any(r.split == "train" for r in results):
        raise DatasetLayoutError(f"{root}/imagesTr: no <case>{CHANNEL}{ending} image found")
    return results, labels
