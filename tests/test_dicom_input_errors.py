"""DICOM inputs the DICOM input refuses, each with its error, exit code and a message that
names files and UIDs, never the patient: empty and junk folders, nothing that qualifies,
broken geometry, undecodable pixel data and volumes over the memory budget.

What the DICOM input tests share: tests/dicom_input_support.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian

from operators.dicom_input import select_series, series_to_volume
from operators.errors import (
    GeometryError,
    NoImageSeriesError,
    NoQualifyingSeriesError,
    PixelDataError,
    VolumeTooLargeError,
)
from synthetic.case import SyntheticCase
from tests.dicom_input_support import (  # the *_fixture names: the module's fixtures
    assert_fails,
    ct_fixture,  # noqa: F401
    only_volume,
    rewrite,
    scan,
    write,
)


def write_sr(path: Path, study_uid: str) -> None:
    """A minimal Comprehensive SR instance: a non-image object without pixel data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComprehensiveSRStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.99.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ComprehensiveSRStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.99"
    ds.Modality = "SR"
    ds.SeriesNumber = 99
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.requirement("SRS-001", "SRS-014")
def test_empty_or_junk_folders_have_no_image_series(tmp_path: Path) -> None:
    assert_fails(NoImageSeriesError, ("no files found",), lambda: select_series(scan(tmp_path)))
    (tmp_path / "a.txt").write_text("not dicom")
    (tmp_path / "b.bin").write_bytes(b"\0" * 200)
    error = assert_fails(
        NoImageSeriesError,
        ("no DICOM image series among 2 file(s)", "2 skipped", "not a DICOM file"),
        lambda: select_series(scan(tmp_path)),
    )
    assert error.exit_code == 10


@pytest.mark.requirement("SRS-002")
def test_only_localizer_or_report_does_not_qualify(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path, localizer=True)
    for path in written.files:
        path.unlink()
    error = assert_fails(
        NoQualifyingSeriesError,
        ("none of the 1 image series", "ORIGINAL\\PRIMARY\\LOCALIZER", "mixed", "2 instance(s)"),
        lambda: select_series(scan(tmp_path)),
    )
    assert error.exit_code == 11
    write_sr(tmp_path / "report.dcm", written.study_instance_uid)
    assert_fails(
        NoQualifyingSeriesError,
        ("modality SR", "Comprehensive SR Storage is not an image SOP class", "LOCALIZER"),
        lambda: select_series(scan(tmp_path)),
    )
    for path in written.localizer_files:
        path.unlink()
    # An SR alone is no image series at all (exit code 10, not 11).
    assert_fails(
        NoImageSeriesError,
        ("non-image series", "modality SR"),
        lambda: select_series(scan(tmp_path)),
    )


@pytest.mark.requirement("SRS-004")
def test_single_slice(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path)
    for path in written.files[1:]:
        path.unlink()
    assert_fails(
        GeometryError, ("single slice", written.files[0].name), lambda: only_volume(tmp_path)
    )


@pytest.mark.requirement("SRS-004")
def test_missing_middle_slice(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path, shuffle=True)
    written.files[5].unlink()  # files[k] holds slice k
    error = assert_fails(
        GeometryError,
        ("missing slice", written.files[4].name, written.files[6].name),
        lambda: only_volume(tmp_path),
    )
    assert error.exit_code == 13


@pytest.mark.requirement("SRS-014")
def test_truncated_pixel_data(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path)
    victim = written.files[4]
    victim.write_bytes(victim.read_bytes()[:-1000])  # Pixel Data is the last element
    error = assert_fails(
        PixelDataError, ("cannot decode the pixel data", victim.name), lambda: only_volume(tmp_path)
    )
    assert error.exit_code == 12


@pytest.mark.requirement("SRS-014")
def test_pixel_data_missing_after_header(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path)
    victim = written.files[2]
    rewrite(victim, lambda ds: delattr(ds, "PixelData"))
    assert_fails(PixelDataError, ("has no pixel data", victim.name), lambda: only_volume(tmp_path))


def rotate_orientation(ds: Dataset) -> None:
    angle = np.deg2rad(20.0)
    ds.ImageOrientationPatient = [
        np.cos(angle),
        np.sin(angle),
        0.0,
        -np.sin(angle),
        np.cos(angle),
        0.0,
    ]


@pytest.mark.requirement("SRS-004")
def test_oblique_series(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path)
    for path in written.files:
        rewrite(path, rotate_orientation)
    assert_fails(
        GeometryError,
        ("oblique or tilted series are not supported", "not aligned with the patient axes"),
        lambda: only_volume(tmp_path),
    )


@pytest.mark.requirement("SRS-004")
def test_gantry_tilt(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path)
    tilt = np.tan(np.deg2rad(15.0)) * ct.geometry.spacing[0]
    for k, path in enumerate(written.files):

        def shift(ds: Dataset, k: int = k) -> None:
            x, y, z = (float(v) for v in ds.ImagePositionPatient)
            ds.ImagePositionPatient = [x, y + k * tilt, z]

        rewrite(path, shift)
    assert_fails(
        GeometryError,
        ("oblique or tilted series are not supported", "not along the slice normal"),
        lambda: only_volume(tmp_path),
    )


@pytest.mark.requirement("SRS-004")
def test_duplicate_positions_and_uneven_spacing(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path / "dup")
    ipp = pydicom.dcmread(written.files[3]).ImagePositionPatient
    rewrite(written.files[4], lambda ds: setattr(ds, "ImagePositionPatient", ipp))
    assert_fails(
        GeometryError,
        ("duplicate slice position", written.files[3].name, written.files[4].name),
        lambda: only_volume(tmp_path / "dup"),
    )
    written = write(ct, tmp_path / "uneven")
    shift = 0.1 * ct.geometry.spacing[0]
    rewrite(
        written.files[4],
        lambda ds: setattr(
            ds,
            "ImagePositionPatient",
            [*ds.ImagePositionPatient[:2], ds.ImagePositionPatient[2] + shift],
        ),
    )
    assert_fails(
        GeometryError, ("inconsistent slice spacing",), lambda: only_volume(tmp_path / "uneven")
    )


@pytest.mark.requirement("SRS-004")
def test_slices_that_do_not_fit_together(tmp_path: Path, ct: SyntheticCase) -> None:
    cases: dict[str, tuple[Callable[[Dataset], None], str]] = {
        "rows": (lambda ds: setattr(ds, "Rows", ds.Rows - 1), "differ in size"),
        "spacing": (lambda ds: setattr(ds, "PixelSpacing", [0.5, 0.5]), "differ in PixelSpacing"),
        "orientation": (
            lambda ds: setattr(ds, "ImageOrientationPatient", [-1, 0, 0, 0, 1, 0]),
            "differ in ImageOrientationPatient",
        ),
    }
    for name, (change, message) in cases.items():
        written = write(ct, tmp_path / name)
        rewrite(written.files[5], change)
        assert_fails(
            GeometryError,
            (message, written.files[5].name),
            lambda n=name: only_volume(tmp_path / n),
        )


@pytest.mark.requirement("SRS-015")
def test_memory_budget_is_checked_before_decoding(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path)
    victim = written.files[4]
    victim.write_bytes(victim.read_bytes()[:-1000])  # would fail decoding, if it got there
    (selected,) = select_series(scan(tmp_path))
    needed = 10 * 53 * 53 * 4
    error = assert_fails(
        VolumeTooLargeError,
        ("over the memory budget", "10 x 53 x 53", selected.series_uid),
        lambda: series_to_volume(selected, needed - 1),
    )
    assert error.exit_code == 14
    with pytest.raises(PixelDataError):
        series_to_volume(selected, needed)
