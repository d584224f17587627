"""What the DICOM input tests share (tests/test_dicom_input.py,
tests/test_dicom_input_errors.py, tests/test_dicom_input_rules.py): the synthetic CT and MR
cases, a folder of mixed series, writing and rewriting series, and checks of volumes and
of the errors the input refuses with. A test module imports the ``*_fixture`` names it
uses to get the ``ct``, ``mr`` and ``mixed`` fixtures (``mixed`` needs ``ct`` as well).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from operators.dicom_input import DicomScan, scan_dicom_folder, select_series, series_to_volume
from operators.errors import PipelineError
from operators.values import SeriesVolume
from synthetic.case import SyntheticCase, generate_case
from synthetic.dicom_series import DicomQuirks, StudyIdentity, WrittenSeries, write_series

FOV = (10.0, 24.0, 24.0)
BUDGET = 1 << 30


@pytest.fixture(scope="module", name="ct")
def ct_fixture() -> SyntheticCase:
    # Fixed spacing: the tests count slices and voxels (10 x 53 x 53).
    return generate_case(11, "CT", spacing=(1.0, 0.453, 0.453), fov_mm=FOV)


@pytest.fixture(scope="module", name="mr")
def mr_fixture() -> SyntheticCase:
    return generate_case(12, "MR", fov_mm=FOV)


@pytest.fixture(scope="module", name="mixed")
def mixed_fixture(tmp_path_factory: pytest.TempPathFactory, ct: SyntheticCase) -> tuple[Path, dict]:
    """Two CT volume series of one study, a localizer, a junk file and a corrupt DICOM."""
    folder = tmp_path_factory.mktemp("mixed")
    identity = StudyIdentity.synthetic(ct.seed, "CT")
    first = write_series(ct, folder, DicomQuirks(shuffle=True, localizer=True), identity)
    second = write_series(ct, folder, DicomQuirks(shuffle=True), identity, series_number=7)
    (folder / "README").write_text("exported by a CD burner\n")
    nested = folder / "deeper" / "still"
    nested.mkdir(parents=True)
    corrupt = nested / "IM000042"
    corrupt.write_bytes(first.files[3].read_bytes()[:600])  # header cut short
    return folder, {"first": first, "second": second, "corrupt": corrupt, "identity": identity}


def write(case: SyntheticCase, folder: Path, **quirks: bool) -> WrittenSeries:
    return write_series(case, folder, DicomQuirks(**quirks))


def rewrite(path: Path, change: Callable[[Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def case_values_at(volume: SeriesVolume, case: SyntheticCase) -> np.ndarray:
    """The case's voxel values at the LPS centres of the volume's voxels."""
    centres = volume.geometry.voxel_centres_lps().reshape(-1, 3).astype(np.float64)
    inverse = np.linalg.inv(case.geometry.affine_lps())
    ijk = centres @ inverse[:3, :3].T + inverse[:3, 3]
    index = np.rint(ijk).astype(int)
    assert np.abs(ijk - index).max() < 1e-3, "volume voxels fall between case voxels"
    i, j, k = index.T
    return case.image[k, j, i].astype(np.float32).reshape(volume.voxels.shape)


def only_volume(folder: Path) -> SeriesVolume:
    (selected,) = select_series(scan_dicom_folder(folder))
    return series_to_volume(selected, BUDGET)


def assert_fails(
    error: type[PipelineError], fragments: tuple[str, ...], call: Callable[[], object]
) -> PipelineError:
    with pytest.raises(error) as caught:
        call()
    for fragment in fragments:
        assert fragment in caught.value.message
    # Messages name files and UIDs, never the patient.
    assert "SYNTHETIC^" not in caught.value.message and "SYN-" not in caught.value.message
    return caught.value


def scan(folder: Path) -> DicomScan:
    return scan_dicom_folder(folder)
