"""DICOM input: folder scan, series selection and series-to-volume, on synthetic series.

Volumes are checked against the synthetic case voxel by voxel through their geometry,
and against ``tests.peers.read_volume``, a naive reader written independently.

Inputs the DICOM input refuses: tests/test_dicom_input_errors.py; the selection rule
format: tests/test_dicom_input_rules.py; what they share: tests/dicom_input_support.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from operators.dicom_input import scan_dicom_folder, select_series, series_to_volume
from operators.errors import InputNotFoundError
from synthetic.case import SyntheticCase
from tests.dicom_input_support import (  # the *_fixture names: the module's fixtures
    BUDGET,
    case_values_at,
    ct_fixture,  # noqa: F401
    mixed_fixture,  # noqa: F401
    mr_fixture,  # noqa: F401
    only_volume,
    rewrite,
    write,
)
from tests.peers import read_volume

# ------------------------------------------------------------------ scan and selection


@pytest.mark.requirement("SRS-001", "SRS-002")
def test_mixed_folder_selects_both_volume_series(mixed: tuple[Path, dict]) -> None:
    folder, written = mixed
    scan = scan_dicom_folder(folder)
    assert [s.series_number for s in scan.all_series] == [1, 7, 1001]
    assert len(scan.studies) == 1 and scan.files_scanned == 10 * 2 + 2 + 2
    skipped = {Path(s.path).name: s.reason for s in scan.skipped}
    assert skipped.keys() == {"README", "IM000042"}
    assert "not a DICOM file" in skipped["README"]
    assert "without StudyInstanceUID" in skipped["IM000042"]

    selected = select_series(scan)
    assert [s.series_uid for s in selected] == [
        written["first"].series_instance_uid,
        written["second"].series_instance_uid,
    ]
    assert {s.name for s in selected} == {"CT volume"}
    assert written["first"].localizer_series_instance_uid not in {s.series_uid for s in selected}
    for chosen in selected:
        volume = series_to_volume(chosen, BUDGET)
        assert volume.voxels.shape == (10, 53, 53) and volume.selection_name == "CT volume"
        assert volume.study_instance_uid == written["identity"].study_instance_uid


@pytest.mark.requirement("SRS-001")
def test_several_studies_in_one_folder(
    tmp_path: Path, ct: SyntheticCase, mr: SyntheticCase
) -> None:
    ct_series = write(ct, tmp_path, shuffle=True)
    mr_series = write(mr, tmp_path, shuffle=True)
    selected = select_series(scan_dicom_folder(tmp_path))
    expected = sorted(
        [(ct_series.study_instance_uid, "CT volume"), (mr_series.study_instance_uid, "MR volume")]
    )
    assert [(s.study_uid, s.name) for s in selected] == expected


@pytest.mark.requirement("SRS-001", "SRS-014")
def test_single_file_input_and_missing_path(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path / "in")
    scan = scan_dicom_folder(written.files[0])
    assert [len(s.instances) for s in scan.all_series] == [1]
    with pytest.raises(InputNotFoundError, match="does not exist"):
        scan_dicom_folder(tmp_path / "nowhere")


# --------------------------------------------------------------------------- volumes


@pytest.mark.requirement("SRS-003")
def test_head_first_and_feet_first_give_the_same_patient_volume(
    tmp_path: Path, ct: SyntheticCase
) -> None:
    hfs = write(ct, tmp_path / "hfs", shuffle=True)
    ffs = write(ct, tmp_path / "ffs", shuffle=True, feet_first=True)
    for written in (hfs, ffs):
        volume = only_volume(tmp_path / ("ffs" if written is ffs else "hfs"))
        np.testing.assert_array_equal(volume.voxels, case_values_at(volume, ct))
        independent = read_volume(written.files)
        np.testing.assert_allclose(volume.geometry.affine_lps(), independent.affine, atol=1e-6)
        np.testing.assert_array_equal(volume.voxels, independent.volume)

    # FFS: the row vector is reversed, so the normal points to the feet and slice 0 is the
    # most cranial file; voxels[k] must be that file's pixels exactly as stored.
    volume = only_volume(tmp_path / "ffs")
    assert volume.geometry.row_direction == (-1.0, 0.0, 0.0)
    assert volume.geometry.slice_direction == (0.0, 0.0, -1.0)
    files = sorted(
        (pydicom.dcmread(f) for f in ffs.files),
        key=lambda ds: -float(ds.ImagePositionPatient[2]),
    )
    for k, ds in enumerate(files):
        np.testing.assert_array_equal(volume.voxels[k], ds.pixel_array)
        assert volume.source_datasets[k].SOPInstanceUID == ds.SOPInstanceUID
        assert "PixelData" not in volume.source_datasets[k]
    assert volume.geometry.origin == tuple(float(v) for v in files[0].ImagePositionPatient)
    assert volume.geometry.spacing == pytest.approx(ct.geometry.spacing, abs=1e-6)


@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.requirement("SRS-005")
def test_jpeg_ls_and_rescale_decode_to_case_values(
    tmp_path: Path, ct: SyntheticCase, mr: SyntheticCase, modality: str
) -> None:
    case = ct if modality == "CT" else mr
    written = write(case, tmp_path, jpeg_ls=True, rescale=True)
    first = pydicom.dcmread(written.files[0])
    assert first.file_meta.TransferSyntaxUID == JPEGLSLossless
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) != (1.0, 0.0)
    assert not np.array_equal(first.pixel_array, case.image[0])  # stored != output values
    volume = only_volume(tmp_path)
    assert volume.voxels.dtype == np.float32
    np.testing.assert_array_equal(volume.voxels, case.image.astype(np.float32))
    np.testing.assert_array_equal(volume.voxels, case_values_at(volume, case))


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "j2k"])
@pytest.mark.requirement("SRS-005")
def test_other_compressed_syntaxes(tmp_path: Path, mr: SyntheticCase, syntax: str) -> None:
    written = write(mr, tmp_path, rescale=True)
    for path in written.files:
        rewrite(path, lambda ds: ds.compress(syntax, generate_instance_uid=False))
    volume = only_volume(tmp_path)
    assert volume.source_datasets[0].file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(volume.voxels, mr.image.astype(np.float32))


@pytest.mark.requirement("SRS-001")
def test_duplicate_file_copies_are_skipped(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path / "in")
    shutil.copy(written.files[0], tmp_path / "in" / "copy-of-first")
    scan_result = scan_dicom_folder(tmp_path / "in")
    assert [len(s.instances) for s in scan_result.all_series] == [10]
    assert [Path(s.path).name for s in scan_result.skipped] == ["copy-of-first"]
    assert "duplicate of SOP Instance UID" in scan_result.skipped[0].reason
