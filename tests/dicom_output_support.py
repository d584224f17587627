"""What the DICOM writer tests share (tests/test_dicom_output.py,
tests/test_dicom_output_segmentation.py, tests/test_dicom_output_report.py): the synthetic
case written head first (HFS) and feet first (FFS), the volumes the production DICOM input
makes of them, the asymmetric vessel phantom in patient (LPS) coordinates and a
segmentation result built on it, and reading written objects back. A test module imports
the ``*_fixture`` names to get the ``case``, ``written`` and ``volumes`` fixtures
(``volumes`` needs ``written``, which needs ``case``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from operators.dicom_input.loader import scan_dicom_folder
from operators.dicom_input.selection import select_series
from operators.dicom_input.volume import series_to_volume
from operators.values import SegmentationResult, SeriesVolume
from synthetic.case import SyntheticCase, generate_case
from synthetic.dicom_series import DicomQuirks, WrittenSeries, write_series

MEMBERS = ("segresnet-a", "segresnet-b", "unet-c")


def load_series(files: tuple[Path, ...]) -> SeriesVolume:
    """The production DICOM input path: scan, select, series to volume."""
    scan = scan_dicom_folder(files[0].parent)
    [selected] = select_series(scan)
    return series_to_volume(selected, memory_budget_bytes=2**30)


def case_index(case: SyntheticCase, lps: np.ndarray) -> np.ndarray:
    """(..., 3) LPS points -> (..., 3) integer case indices (i, j, k); must hit centres."""
    inverse = np.linalg.inv(case.geometry.affine_lps())
    ijk = lps @ inverse[:3, :3].T + inverse[:3, 3]
    index = np.rint(ijk).astype(int)
    assert np.abs(ijk - index).max() < 1e-3, "points fall between voxel centres"
    return index


def phantom(case: SyntheticCase, lps: np.ndarray) -> np.ndarray:
    """Asymmetric vessel phantom at LPS points: an L in slices 1-3 and a blob at the top.

    Neither part is symmetric under any flip of i, j or k, so a reversed axis anywhere
    moves pixels off the phantom.
    """
    nz, ny, nx = case.geometry.shape
    i, j, k = np.moveaxis(case_index(case, lps), -1, 0)
    stem = (i >= 3) & (i <= 6) & (j >= 4) & (j < ny * 2 // 3)
    foot = (i >= 3) & (i < nx * 3 // 4) & (j >= ny * 2 // 3 - 4) & (j < ny * 2 // 3)
    letter_l = (k >= 1) & (k <= 3) & (stem | foot)
    blob = (k == nz - 2) & (i >= nx - 8) & (i < nx - 3) & (j >= 2) & (j < 5)
    return (letter_l | blob).astype(np.uint8)


def make_result(
    case: SyntheticCase, volume: SeriesVolume, *, ood: bool = False
) -> SegmentationResult:
    mask = phantom(case, volume.geometry.voxel_centres_lps().astype(np.float64))
    ramp = np.linspace(0.0, 0.2, mask.size, dtype=np.float32).reshape(mask.shape)
    probability = np.clip(0.75 * mask + ramp, 0.0, 1.0).astype(np.float32)
    p = np.clip(probability, 1e-6, 1 - 1e-6)
    entropy = (-(p * np.log(p) + (1 - p) * np.log(1 - p))).astype(np.float32)
    mutual_information = (0.25 * entropy).astype(np.float32)
    score = float(mutual_information.mean())
    return SegmentationResult(
        mean_probability=probability,
        mask=mask,
        predictive_entropy=entropy,
        expected_entropy=(entropy - mutual_information).astype(np.float32),
        mutual_information=mutual_information,
        uncertainty_score=score,
        ood_threshold=score / 2 if ood else score * 2,
        model_name="minivess-segresnet-ensemble",
        model_version="2.1.0",
        member_names=MEMBERS,
    )


@pytest.fixture(scope="module", name="case")
def case_fixture() -> SyntheticCase:
    return generate_case(11, "CT", fov_mm=(10.0, 24.0, 24.0))


@pytest.fixture(scope="module", name="written")
def written_fixture(
    case: SyntheticCase, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, WrittenSeries]:
    root = tmp_path_factory.mktemp("sources")
    return {
        "HFS": write_series(case, root / "hfs", DicomQuirks()),
        "FFS": write_series(case, root / "ffs", DicomQuirks(feet_first=True)),
    }


@pytest.fixture(scope="module", name="volumes")
def volumes_fixture(written: dict[str, WrittenSeries]) -> dict[str, SeriesVolume]:
    return {name: load_series(series.files) for name, series in written.items()}


def reread(dataset: Dataset, path: Path) -> Dataset:
    """Save as a Part 10 file (what dciodvfy and the PACS see) and read it back."""
    dataset.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def code_of(item: Dataset) -> tuple[str, str]:
    return (str(item.CodeValue), str(item.CodingSchemeDesignator))
