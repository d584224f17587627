"""Validate a site dataset before anything trains on it, and hand back ``LoadedCase``s.

Every case is checked and every problem collected (a site fixes its dataset once, not
once per run), then :class:`DatasetValidationError` lists them all. The checks:

- ``geometry-mismatch``: image and label on different grids (shape, spacing, origin or
  orientation);
- ``label-values``: a label value (or SEG segment) the dataset does not declare;
- ``refused-geometry``: what the appliance's pipeline refuses: oblique or tilted planes
  (the same axis tolerance as ``operators.dicom_input.volume``), a non-axial volume (its
  default selection rule), and, the builder's own rule, spacing coarser than the recipe's
  ``max_spacing_mm`` (vessels are then below a voxel: nothing to learn, much to mislearn);
- ``duplicate``: two cases of one split with the same image voxels;
- ``test-in-training``: a test case whose image (or name) is also a training case, which
  would make the site's test metrics a measure of memory.

Accepted cases become ``synthetic.splits.LoadedCase`` (mask = any declared non-zero
label), the type the builder's training and evaluation code already take.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from models.builder.datasets.cases import CaseProblem, DatasetLayoutError, RawCase, ReadResult
from operators.dicom_input.rules import orientation_label
from operators.dicom_input.volume import AXIS_TOLERANCE, POSITION_TOLERANCE_MM
from operators.geometry import VoxelGeometry
from synthetic.splits import LoadedCase, _digest_update  # one digest for every split


def image_sha256(image: np.ndarray) -> str:
    """Content hash of the voxels (dtype and shape included), independent of file format."""
    digest = hashlib.sha256(f"{image.dtype.str}|{image.shape}\n".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def content_sha256(cases: Sequence[LoadedCase]) -> str:
    """The digest ``synthetic.splits`` records for a split, over cases sorted by name."""
    digest = hashlib.sha256()
    for case in sorted(cases, key=lambda c: c.name):
        _digest_update(digest, case.name, case.image, case.mask, case.geometry)
    return digest.hexdigest()


def _grid_difference(image: VoxelGeometry, label: VoxelGeometry) -> str | None:
    if image.shape != label.shape:
        return f"label shape {label.shape} differs from the image's {image.shape} (k, j, i)"
    if not np.allclose(image.spacing, label.spacing, rtol=1e-4, atol=1e-4):
        return f"label spacing {label.spacing} mm differs from the image's {image.spacing} mm"
    offset = float(np.linalg.norm(np.subtract(image.origin, label.origin)))
    if offset > POSITION_TOLERANCE_MM:
        return f"label origin lies {offset:.3f} mm from the image's (LPS {label.origin})"
    for name in ("row_direction", "column_direction"):
        if not np.allclose(getattr(image, name), getattr(label, name), atol=AXIS_TOLERANCE):
            return f"label {name} {getattr(label, name)} differs from the image's"
    return None


def _refused_geometry(geometry: VoxelGeometry, max_spacing_mm: float) -> str | None:
    for name in ("row_direction", "column_direction"):
        vector = np.asarray(getattr(geometry, name))
        axis = np.zeros(3)
        axis[int(np.argmax(np.abs(vector)))] = np.sign(vector[np.argmax(np.abs(vector))])
        if np.abs(vector - axis).max() > AXIS_TOLERANCE:
            return (
                f"oblique or tilted volume ({name} {tuple(round(v, 4) for v in vector)}): "
                "the appliance refuses such series"
            )
    plane = orientation_label((*geometry.row_direction, *geometry.column_direction))
    if plane != "Axial":
        return f"{plane} slices: the appliance's selection rule takes axial volumes only"
    if max(geometry.spacing) > max_spacing_mm:
        return (
            f"spacing {tuple(round(s, 3) for s in geometry.spacing)} mm is coarser than the "
            f"recipe's max_spacing_mm {max_spacing_mm}"
        )
    return None


def _check(case: RawCase, labels: dict[int, str], max_spacing_mm: float) -> CaseProblem | None:
    def problem(kind: str, message: str) -> CaseProblem:
        return CaseProblem(case=case.name, split=case.split, kind=kind, message=message)

    mismatch = _grid_difference(case.image_geometry, case.label_geometry)
    if mismatch:
        return problem("geometry-mismatch", f"{case.source}: {mismatch}")
    undeclared = sorted(set(np.unique(case.label).tolist()) - set(labels))
    if undeclared:
        return problem(
            "label-values",
            f"{case.source}: label values {undeclared} are not declared (declared: {labels})",
        )
    refused = _refused_geometry(case.image_geometry, max_spacing_mm)
    if refused:
        return problem("refused-geometry", f"{case.source}: {refused}")
    return None


def validate_cases(
    dataset: str,
    results: Sequence[ReadResult],
    labels: dict[int, str],
    max_spacing_mm: float,
    vessel_labels: Sequence[str] | None = None,
) -> tuple[list[CaseProblem], list[LoadedCase], list[LoadedCase]]:
    """Problems, accepted training cases and accepted test cases (in the readers' order).

    ``vessel_labels``: the names of the declared labels that are vessel (the others are
    learnt as background); None: every declared label but 0.
    """
    problems = [r for r in results if isinstance(r, CaseProblem)]
    raw = [r for r in results if isinstance(r, RawCase)]
    hashes = [image_sha256(case.image) for case in raw]
    # Duplicates and leaks are judged over every readable case, also those with other
    # problems: a copy of a broken case is still a copy.
    train_by_hash: dict[str, RawCase] = {}
    for case, digest in zip(raw, hashes, strict=True):
        if case.split == "train":
            train_by_hash.setdefault(digest, case)
    train_names = {c.name for c in raw if c.split == "train"}
    first_seen: dict[tuple[str, str], RawCase] = {}
    keep: list[RawCase] = []
    for case, digest in zip(raw, hashes, strict=True):
        earlier = first_seen.setdefault((case.split, digest), case)
        found = _check(case, labels, max_spacing_mm)
        if found is None and earlier is not case:
            found = CaseProblem(
                case=case.name,
                split=case.split,
                kind="duplicate",
                message=f"{case.source} has the same image content as {earlier.source} "
                f"(SHA-256 {digest[:16]}...)",
            )
        if found is None and case.split == "test":
            twin = train_by_hash.get(digest)
            if twin is not None or case.name in train_names:
                where = twin.source if twin is not None else f"training case {case.name}"
                found = CaseProblem(
                    case=case.name,
                    split="test",
                    kind="test-in-training",
                    message=f"{case.source} is also in training ({where}): a test case must "
                    "never be trained on",
                )
        if found is None:
            keep.append(case)
        else:
            problems.append(found)
    foreground = vessel_values(dataset, labels, vessel_labels)
    loaded = {
        "train": [_loaded(c, foreground) for c in keep if c.split == "train"],
        "test": [_loaded(c, foreground) for c in keep if c.split == "test"],
    }
    return problems, loaded["train"], loaded["test"]


def vessel_values(
    dataset: str, labels: dict[int, str], vessel_labels: Sequence[str] | None
) -> list[int]:
    if vessel_labels is None:
        return [value for value in labels if value != 0]
    by_name = {name: value for value, name in labels.items()}
    unknown = [name for name in vessel_labels if name not in by_name or by_name[name] == 0]
    if unknown:
        raise DatasetLayoutError(
            f"{dataset}: vessel_labels {unknown} are not declared foreground labels "
            f"(declared: {labels})"
        )
    return [by_name[name] for name in vessel_labels]


def _loaded(case: RawCase, foreground: list[int]) -> LoadedCase:
    return LoadedCase(
        name=case.name,
        modality=case.modality,
        image=np.ascontiguousarray(case.image, dtype=np.float32),
        mask=np.isin(case.label, foreground).astype(np.uint8),
        geometry=case.image_geometry,
    )
