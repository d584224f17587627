"""The values that flow between the pipeline's operators.

``SeriesVolume`` is one selected DICOM series turned into a volume, plus what the writers
need to put their objects into the source study and reference it. Its convention keeps
every slice exactly as the scanner stored it, so outputs need no re-orientation:

* ``voxels[k]`` is the pixel array of ``source_datasets[k]`` (rows x columns, as stored),
  with the Modality LUT (rescale slope/intercept) applied;
* ``geometry.row_direction`` / ``column_direction`` are the series' Image Orientation
  (Patient) vectors, ``geometry.spacing`` is (slice spacing, row spacing, column spacing)
  and ``geometry.origin`` the Image Position (Patient) of ``source_datasets[0]``;
* slices are sorted ascending by their position along the normal row x column
  (``geometry.slice_direction``), whether the series was acquired head or feet first.

This is the ``[k, j, i]`` / LPS convention of ``operators.geometry.VoxelGeometry``.
Source datasets may have their pixel data dropped to save memory.

Each value checks its invariants when it is made (as highdicom's constructors do): shapes,
dtypes, value ranges, modality and sources. A value that breaks one raises
:class:`InvalidValueError` with a message that names the field and what is wrong, where
the value is made rather than in a writer further down the graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from operators.errors import DicomOutputError
from operators.geometry import VoxelGeometry

# Mutual information is a difference of entropies: float rounding leaves -1e-7 nats.
NEGATIVE_NATS_TOLERANCE = 1e-4
_CODE_STRING = re.compile(r"[A-Z0-9 _]{0,16}")  # VR CS (PS3.5 6.2): Modality


class InvalidValueError(DicomOutputError):
    """A value passed between operators breaks an invariant; the message says which.

    A :class:`~operators.errors.DicomOutputError`: no valid object can be written from it,
    so a run stops with the writers' exit code and reason, as when they found it.
    """


def _array(name: str, value: object, dtype: type[np.generic]) -> np.ndarray:
    """``value`` if it is a 3D ``[k, j, i]`` array of ``dtype``."""
    if not isinstance(value, np.ndarray) or value.ndim != 3 or value.dtype != dtype:
        got = (
            f"{value.dtype} of shape {value.shape}"
            if isinstance(value, np.ndarray)
            else type(value).__name__
        )
        raise InvalidValueError(f"{name} must be a {np.dtype(dtype)} [k, j, i] array, got {got}")
    return value


def _float_map(name: str, value: object) -> tuple[float, float]:
    """Check a float32 [k, j, i] map holds only finite values; return its (min, max)."""
    array = _array(name, value, np.float32)
    # min/max propagate NaN and expose infinities: no boolean copy of the whole volume.
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InvalidValueError(f"{name} holds NaN or infinite values")
    return low, high


@dataclass(frozen=True)
class SeriesVolume:
    """A volume built from one DICOM series, in physical units (rescale applied).

    ``source_datasets[k]`` is the source instance of slice ``k`` (same order as the
    voxels), so ``source_datasets[0]`` is the slice with the lowest position along the
    normal.
    """

    voxels: np.ndarray  # float32 [k, j, i], Modality LUT (rescale) applied
    geometry: VoxelGeometry
    modality: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    series_description: str
    source_datasets: tuple[Dataset, ...]
    selection_name: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        shape = tuple(_array("voxels", self.voxels, np.float32).shape)
        if shape != self.geometry.shape:
            raise InvalidValueError(
                f"voxels have shape {shape}, the geometry {self.geometry.shape} "
                "(slices, rows, columns)"
            )
        if not _CODE_STRING.fullmatch(self.modality):
            raise InvalidValueError(
                f"modality must be a DICOM code string (up to 16 of A-Z, 0-9, space, _), "
                f"got {self.modality!r}"
            )
        self._check_sources(shape)

    def _check_sources(self, shape: tuple[int, ...]) -> None:
        """None (NIfTI input), or one source instance of this series per slice."""
        if not self.source_datasets:
            return
        if len(self.source_datasets) != shape[0]:
            raise InvalidValueError(
                f"the volume has {shape[0]} slices but {len(self.source_datasets)} source datasets"
            )
        for ds in self.source_datasets:
            if str(ds.get("StudyInstanceUID", "")) != self.study_instance_uid:
                raise InvalidValueError("a source dataset belongs to another study than the volume")
            if str(ds.get("SeriesInstanceUID", "")) != self.series_instance_uid:
                raise InvalidValueError(
                    "a source dataset belongs to another series than the volume"
                )
            if (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) != shape[1:]:
                raise InvalidValueError(
                    f"source dataset {ds.get('SOPInstanceUID', '?')} is "
                    f"{ds.get('Rows')}x{ds.get('Columns')}, the volume's slices "
                    f"{shape[1]}x{shape[2]}"
                )

    @property
    def sop_instance_uids(self) -> tuple[str, ...]:
        return tuple(str(ds.SOPInstanceUID) for ds in self.source_datasets)


@dataclass(frozen=True)
class SegmentationResult:
    """What inference and uncertainty produce for one series, on its native grid."""

    mean_probability: np.ndarray  # float32 [k, j, i], fused vessel probability
    mask: np.ndarray  # uint8 [k, j, i], 1 = vessel
    predictive_entropy: np.ndarray  # float32, nats (total uncertainty)
    expected_entropy: np.ndarray  # float32, nats (aleatoric)
    mutual_information: np.ndarray  # float32, nats (epistemic)
    uncertainty_score: float
    ood_threshold: float
    model_name: str
    model_version: str
    member_names: tuple[str, ...]
    # MR components the faint-component rule took out of the mask (models.faint_components).
    faint_components_dropped: int = 0
    faint_voxels_dropped: int = 0
    # MR voxels the lumen-growth rule added to the mask (models.lumen_growth).
    lumen_voxels_grown: int = 0

    def __post_init__(self) -> None:
        low, high = _float_map("mean_probability", self.mean_probability)
        grid = self.mean_probability.shape
        for name in ("mask", "predictive_entropy", "expected_entropy", "mutual_information"):
            array = getattr(self, name)
            if isinstance(array, np.ndarray) and array.shape != grid:
                raise InvalidValueError(
                    f"{name} has shape {array.shape}, mean_probability {grid}: "
                    "every map lies on the volume's grid"
                )
        if low < 0.0 or high > 1.0:
            raise InvalidValueError(f"mean_probability must lie in [0, 1], got {low}..{high}")
        mask = _array("mask", self.mask, np.uint8)
        if mask.size and mask.max() > 1:
            raise InvalidValueError("mask must hold only 0 and 1")
        for name in ("predictive_entropy", "expected_entropy", "mutual_information"):
            low, _ = _float_map(name, getattr(self, name))
            if low < -NEGATIVE_NATS_TOLERANCE:
                raise InvalidValueError(f"{name} must be >= 0 nats, got minimum {low}")
        if not self.model_name or not self.model_version:
            raise InvalidValueError("the segmentation result names no model (name and version)")
        if not self.member_names:
            raise InvalidValueError("the segmentation result names no ensemble member")
        if min(self.faint_components_dropped, self.faint_voxels_dropped) < 0:
            raise InvalidValueError("dropped faint components and voxels cannot be negative")
        if self.lumen_voxels_grown < 0:
            raise InvalidValueError("grown lumen voxels cannot be negative")

    @property
    def out_of_distribution(self) -> bool:
        """Flagged for human review: still answered, marked in every output."""
        return self.uncertainty_score > self.ood_threshold

    def vessel_volume_ml(self, geometry: VoxelGeometry) -> float:
        voxel_mm3 = float(np.prod(geometry.spacing))
        return float(self.mask.sum()) * voxel_mm3 / 1000.0


def check_same_grid(volume: SeriesVolume, result: SegmentationResult) -> None:
    """``result`` lies on ``volume``'s grid, voxel for voxel."""
    grid = volume.geometry.shape
    if tuple(result.mask.shape) != grid:
        raise InvalidValueError(
            f"the result's maps have shape {tuple(result.mask.shape)}, the volume {grid} "
            "(slices, rows, columns)"
        )


@dataclass(frozen=True)
class SeriesWork:
    """One series on its way through the pipeline."""

    volume: SeriesVolume
    member_probabilities: np.ndarray | None = None  # (members, k, j, i)
    result: SegmentationResult | None = None

    def __post_init__(self) -> None:
        grid = self.volume.geometry.shape
        members = self.member_probabilities
        if members is not None and (members.ndim != 4 or tuple(members.shape[1:]) != grid):
            raise InvalidValueError(
                f"member_probabilities have shape {members.shape}, the volume {grid} "
                "(members, slices, rows, columns)"
            )
        if self.result is not None:
            check_same_grid(self.volume, self.result)

    def finished(self) -> SegmentationResult:
        """The result, which every writer needs: only the uncertainty step makes it."""
        if self.result is None:
            raise RuntimeError(
                f"series {self.volume.series_instance_uid} reached a writer without a result"
            )
        return self.result
