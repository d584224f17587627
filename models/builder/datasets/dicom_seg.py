"""DICOM studies annotated with DICOM Segmentation objects (read with highdicom).

    site-dicom/
        dataset.json      optional: {"labels": {"background": 0, "vessel": 1}}
        train/...         image series and their SEGs, any folder structure, any names
        test/...          the site's locked test cases, same form

Each SEG is one case: the image series it references (Referenced Series Sequence) is
read by the appliance's own DICOM code, selected by its default rules (axial CT/MR
volumes, no localizers or derived images) and built into a volume with its geometry
checks (``operators.dicom_input``: oblique, tilted, missing or unevenly spaced slices are
refused there, so they are refused here). The SEG must be BINARY, its segment numbers
are the label values (as for nnU-Net labels: vessel are the recipe's vessel_labels,
by default every declared one but 0), and each of
its frames must lie where the source slice it references lies.

Cases are named ``dicom-<12 hex>`` from a hash of the Series Instance UID: no name,
patient ID or UID of the study is ever put into a message or a log.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import highdicom as hd
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
from operators.dicom_input.loader import DicomScan, DicomSeries, scan_dicom_folder
from operators.dicom_input.selection import select_series
from operators.dicom_input.volume import POSITION_TOLERANCE_MM, series_to_volume
from operators.errors import PipelineError
from operators.values import SeriesVolume

SEG_MODALITY = "SEG"
DEFAULT_LABELS = {0: "background", 1: "vessel"}


def is_dicom_seg(root: Path) -> bool:
    return (root / "train").is_dir() and not (root / "imagesTr").is_dir()


def case_name(series_instance_uid: str) -> str:
    return "dicom-" + hashlib.sha256(series_instance_uid.encode()).hexdigest()[:12]


def _declared(root: Path) -> dict[int, str]:
    path = root / "dataset.json"
    if not path.is_file():
        return dict(DEFAULT_LABELS)
    try:
        raw = json.loads(path.read_text()).get("labels", {})
        labels = {int(value): str(key) for key, value in raw.items()}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as error:
        raise DatasetLayoutError(
            f'{path}: labels must be {{"name": segment number, ...}}: {error}'
        ) from error
    if labels.get(0) is None or len(labels) < 2:
        raise DatasetLayoutError(f"{path}: labels must declare background 0 and a vessel segment")
    return labels


def _frame_positions(seg: hd.seg.Segmentation) -> list[tuple[str, tuple[float, ...]]]:
    """(referenced source SOP Instance UID, Image Position (Patient)) of every frame."""
    frames = []
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        position = item.PlanePositionSequence[0].ImagePositionPatient
        frames.append((str(source.ReferencedSOPInstanceUID), tuple(float(v) for v in position)))
    return frames


def _geometry_mismatch(seg: hd.seg.Segmentation, volume: SeriesVolume) -> str | None:
    _, rows, columns = volume.geometry.shape
    if (int(seg.Rows), int(seg.Columns)) != (rows, columns):
        return (
            f"SEG frames are {seg.Rows}x{seg.Columns}, the image slices {rows}x{columns} "
            "(rows x columns)"
        )
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    spacing = tuple(float(v) for v in measures.PixelSpacing)
    if not np.allclose(spacing, volume.geometry.spacing[1:], rtol=0, atol=1e-4):
        return (
            f"SEG pixel spacing {list(spacing)} mm differs from the image's "
            f"{list(volume.geometry.spacing[1:])} mm"
        )
    positions = {
        str(ds.SOPInstanceUID): tuple(float(v) for v in ds.ImagePositionPatient)
        for ds in volume.source_datasets
    }
    for number, (source, position) in enumerate(_frame_positions(seg), start=1):
        if source not in positions:
            return f"SEG frame {number} references an instance that is not in the image series"
        offset = float(np.linalg.norm(np.subtract(position, positions[source])))
        if offset > POSITION_TOLERANCE_MM:
            return (
                f"SEG frame {number} lies {offset:.3f} mm away from the slice it references "
                "(Image Position (Patient) differs)"
            )
    return None


def _read_seg(
    path: Path, split: SiteSplit, scan: DicomScan, selected: set[str], labels: dict[int, str]
) -> ReadResult:
    try:
        seg = hd.seg.segread(path)
        referenced = str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    except (OSError, ValueError, AttributeError, IndexError, KeyError) as error:
        return CaseProblem(
            case=path.name,
            split=split,
            kind="unreadable",
            message=f"cannot read DICOM SEG ({type(error).__name__})",
        )
    name = case_name(referenced)

    def problem(kind: str, message: str) -> CaseProblem:
        return CaseProblem(case=name, split=split, kind=kind, message=message)

    series = next((s for s in scan.all_series if s.series_instance_uid == referenced), None)
    if series is None or not series.is_image:
        return problem("missing-label", "the SEG references an image series not in the folder")
    if referenced not in selected:
        return problem(
            "refused-geometry",
            f"the pipeline's selection rules do not take this series ({series.modality}, "
            f"orientations {[list(o) for o in series.orientations][:2]}): the appliance "
            "segments axial CT/MR volumes only",
        )
    modality = parse_modality(series.modality)
    if modality is None:
        return problem("modality", f"modality {series.modality!r}: the appliance takes CT or MR")
    try:
        volume = series_to_volume(series, READ_BUDGET_BYTES)
    except PipelineError as error:
        kind = "refused-geometry" if error.reason == "bad-geometry" else "unreadable"
        # The runtime's message names the series UID and file paths: keep only the reason.
        return problem(kind, _without_identifiers(error.message, series))
    if str(seg.SegmentationType) != "BINARY":
        return problem(
            "label-values",
            f"SEG is {seg.SegmentationType}: training needs a BINARY vessel annotation",
        )
    numbers = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    undeclared = {n: label for n, label in numbers.items() if n not in labels or n == 0}
    if undeclared:
        return problem(
            "label-values",
            f"SEG segments {undeclared} are not among the declared labels {labels}",
        )
    mismatch = _geometry_mismatch(seg, volume)
    if mismatch:
        return problem("geometry-mismatch", mismatch)
    sources = [str(ds.SOPInstanceUID) for ds in volume.source_datasets]
    label = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=sources,
        segment_numbers=sorted(numbers),
        combine_segments=True,
    )
    return RawCase(
        name=name,
        split=split,
        modality=modality,
        image=volume.voxels,
        image_geometry=volume.geometry,
        label=np.asarray(label, dtype=np.int32),
        label_geometry=volume.geometry,  # aligned frame by frame, checked above
        source=f"{split}/SEG of series {name}",
    )


def _without_identifiers(message: str, series: DicomSeries) -> str:
    text = message.replace(series.series_instance_uid, "<series>")
    for instance in series.instances:
        text = text.replace(str(instance.path), instance.path.name)
    return text


def read_dicom_seg(root: Path) -> tuple[list[ReadResult], dict[int, str]]:
    """Every SEG-annotated series under ``train/`` and ``test/``, and the declared labels."""
    labels = _declared(root)
    results: list[ReadResult] = []
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            if split == "train":
                raise DatasetLayoutError(f"{root}: no train/ folder of DICOM studies")
            continue
        scan = scan_dicom_folder(folder)
        try:
            selected = {s.series.series_instance_uid for s in select_series(scan)}
        except PipelineError:
            selected = set()  # no image series at all: every SEG below is reported
        segs = [s for s in scan.all_series if s.modality == SEG_MODALITY]
        for series in segs:
            for instance in series.instances:
                results.append(_read_seg(instance.path, split, scan, selected, labels))
    if not any(r.split == "train" for r in results):
        raise DatasetLayoutError(f"{root}/train: no DICOM SEG found (one SEG per case)")
    return results, labels
