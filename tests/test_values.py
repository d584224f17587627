"""The values passed between operators reject what breaks their invariants as they are made."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from operators.errors import DicomOutputError
from operators.geometry import VoxelGeometry
from operators.values import (
    InvalidValueError,
    SegmentationResult,
    SeriesVolume,
    SeriesWork,
)

SHAPE = (3, 4, 5)
STUDY, SERIES = "1.2.3", "1.2.3.4"


def source(k: int, **changes: Any) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
    ds.SOPInstanceUID = f"1.2.3.4.{k}"
    ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def volume(**changes: Any) -> SeriesVolume:
    fields: dict[str, Any] = {
        "voxels": np.zeros(SHAPE, dtype=np.float32),
        "geometry": VoxelGeometry(shape=SHAPE, spacing=(1.0, 0.5, 0.5)),
        "modality": "CT",
        "study_instance_uid": STUDY,
        "series_instance_uid": SERIES,
        "frame_of_reference_uid": "1.2.3.9",
        "series_description": "",
        "source_datasets": tuple(source(k) for k in range(SHAPE[0])),
    }
    return SeriesVolume(**{**fields, **changes})


def result(**changes: Any) -> SegmentationResult:
    probability = np.linspace(0.0, 1.0, int(np.prod(SHAPE)), dtype=np.float32).reshape(SHAPE)
    nats = np.full(SHAPE, 0.25, dtype=np.float32)
    fields: dict[str, Any] = {
        "mean_probability": probability,
        "mask": (probability >= 0.5).astype(np.uint8),
        "predictive_entropy": nats,
        "expected_entropy": nats,
        "mutual_information": np.zeros(SHAPE, dtype=np.float32),
        "uncertainty_score": 0.1,
        "ood_threshold": 0.2,
        "model_name": "minivess",
        "model_version": "2.0.0",
        "member_names": ("a", "b"),
    }
    return SegmentationResult(**{**fields, **changes})


def test_valid_values_are_made() -> None:
    work = SeriesWork(volume(), np.zeros((2, *SHAPE), dtype=np.float32), result())
    assert work.finished().mask.shape == SHAPE
    assert volume(source_datasets=(), modality="").source_datasets == ()  # NIfTI input


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"voxels": np.zeros(SHAPE, dtype=np.int16)}, "voxels must be a float32"),
        ({"voxels": np.zeros(SHAPE[1:], dtype=np.float32)}, "voxels must be a float32"),
        ({"voxels": np.zeros((3, 4, 6), dtype=np.float32)}, "voxels have shape"),
        ({"modality": "ct"}, "modality must be a DICOM code string"),
        ({"modality": "X" * 17}, "modality must be a DICOM code string"),
        ({"source_datasets": (source(0),)}, "3 slices but 1 source datasets"),
        (
            {"source_datasets": (source(0), source(1), source(2, StudyInstanceUID="9"))},
            "another study",
        ),
        (
            {"source_datasets": (source(0), source(1), source(2, SeriesInstanceUID="9"))},
            "another series",
        ),
        ({"source_datasets": (source(0), source(1), source(2, Rows=8))}, "is 8x5"),
    ],
    ids=[
        "voxel-dtype",
        "voxel-rank",
        "voxels-off-geometry",
        "modality-case",
        "modality-length",
        "missing-slice",
        "other-study",
        "other-series",
        "other-size",
    ],
)
def test_series_volume_rejects(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        volume(**changes)


def _nan(array: np.ndarray) -> np.ndarray:
    out = array.copy()
    out[0, 0, 0] = np.nan
    return out


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mean_probability": np.zeros(SHAPE, dtype=np.float64)}, "mean_probability must be"),
        ({"mean_probability": np.full(SHAPE, 1.5, dtype=np.float32)}, r"lie in \[0, 1\]"),
        ({"mean_probability": np.full(SHAPE, np.inf, dtype=np.float32)}, "NaN or infinite"),
        ({"mask": np.zeros((3, 4, 6), dtype=np.uint8)}, "mask has shape"),
        ({"mask": np.zeros(SHAPE, dtype=np.int64)}, "mask must be a uint8"),
        ({"mask": np.full(SHAPE, 2, dtype=np.uint8)}, "only 0 and 1"),
        ({"predictive_entropy": np.zeros((3, 4), dtype=np.float32)}, "predictive_entropy has"),
        ({"expected_entropy": np.full(SHAPE, -0.5, dtype=np.float32)}, "must be >= 0 nats"),
        ({"mutual_information": _nan(np.zeros(SHAPE, dtype=np.float32))}, "NaN or infinite"),
        ({"model_version": ""}, "names no model"),
        ({"model_name": ""}, "names no model"),
        ({"member_names": ()}, "no ensemble member"),
    ],
    ids=[
        "probability-dtype",
        "probability-range",
        "probability-infinite",
        "mask-shape",
        "mask-dtype",
        "mask-values",
        "entropy-shape",
        "negative-nats",
        "nan-map",
        "no-version",
        "no-name",
        "no-members",
    ],
)
def test_segmentation_result_rejects(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        result(**changes)


def test_rounding_below_zero_nats_is_tolerated() -> None:
    tiny = np.full(SHAPE, -1e-7, dtype=np.float32)
    assert result(mutual_information=tiny).mutual_information.min() < 0


def test_series_work_rejects_maps_off_the_volume_grid() -> None:
    other = (3, 4, 6)
    with pytest.raises(InvalidValueError, match="member_probabilities have shape"):
        SeriesWork(volume(), np.zeros((2, *other), dtype=np.float32))
    with pytest.raises(InvalidValueError, match="member_probabilities have shape"):
        SeriesWork(volume(), np.zeros(SHAPE, dtype=np.float32))
    off_grid = result(
        **{
            name: np.zeros(other, dtype=np.float32)
            for name in ("mean_probability", "predictive_entropy", "expected_entropy")
        },
        mask=np.zeros(other, dtype=np.uint8),
        mutual_information=np.zeros(other, dtype=np.float32),
    )
    with pytest.raises(InvalidValueError, match=r"the result's maps have shape \(3, 4, 6\)"):
        SeriesWork(volume(), None, off_grid)


def test_a_work_item_without_result_never_reaches_a_writer() -> None:
    with pytest.raises(RuntimeError, match="without a result"):
        SeriesWork(volume()).finished()


def test_invalid_values_fail_a_run_as_the_writers_did() -> None:
    """Exit code 30 and the output-failed reason, as when the writers found them."""
    with pytest.raises(DicomOutputError) as raised:
        replace(result(), mask=np.full(SHAPE, 3, dtype=np.uint8))
    assert (raised.value.exit_code, raised.value.reason) == (30, "output-failed")
