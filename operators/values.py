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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from operators.geometry import VoxelGeometry


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

    @property
    def out_of_distribution(self) -> bool:
        """Flagged for human review: still answered, marked in every output."""
        return self.uncertainty_score > self.ood_threshold

    def vessel_volume_ml(self, geometry: VoxelGeometry) -> float:
        voxel_mm3 = float(np.prod(geometry.spacing))
        return float(self.mask.sum()) * voxel_mm3 / 1000.0


@dataclass(frozen=True)
class SeriesWork:
    """One series on its way through the pipeline."""

    volume: SeriesVolume
    member_probabilities: np.ndarray | None = None  # (members, k, j, i)
    result: SegmentationResult | None = None

    def finished(self) -> SegmentationResult:
        """The result, which every writer needs: only the uncertainty step makes it."""
        if self.result is None:
            raise RuntimeError(
                f"series {self.volume.series_instance_uid} reached a writer without a result"
            )
        return self.result
