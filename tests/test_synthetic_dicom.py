"""Synthetic cases written as DICOM series: determinism, validity, geometry, peers."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless

from synthetic.case import Modality, SyntheticCase, generate_case
from synthetic.dicom_series import DicomQuirks, StudyIdentity, WrittenSeries, write_series
from tests.peers import Orthanc, ReadVolume, echoscu, read_volume, run_dciodvfy, storescu

SMALL_FOV = (8.0, 20.0, 20.0)
ALL_QUIRKS = DicomQuirks(shuffle=True, feet_first=True, localizer=True, jpeg_ls=True, rescale=True)
QUIRK_SETS = {
    "plain": DicomQuirks(),
    **{name: DicomQuirks(**{name: True}) for name in DicomQuirks.model_fields},
    "all": ALL_QUIRKS,
}
# Warnings dciodvfy is right to give for quirks we produce on purpose; anything else fails.
EXPECTED_WARNINGS = {
    "rescale": ("Rescale", "Standard Extended SOP Class"),  # MR IOD has no Modality LUT
    "localizer": ("defined term <LOCALIZER> for value 3",),  # not a defined term for MR
}


@pytest.fixture(scope="module")
def cases() -> dict[Modality, SyntheticCase]:
    return {m: generate_case(7, m, fov_mm=SMALL_FOV) for m in Modality}


def sha256_by_name(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def assert_matches_case(read: ReadVolume, case: SyntheticCase, *, full: bool) -> None:
    """Every read voxel sits on a case voxel centre (in LPS) and has that voxel's value."""
    s, r, c = np.meshgrid(*(np.arange(n) for n in read.volume.shape), indexing="ij")
    points = read.affine @ np.stack([c.ravel(), r.ravel(), s.ravel(), np.ones(c.size)])
    ijk = np.linalg.inv(case.geometry.affine_lps()) @ points
    index = np.rint(ijk[:3]).astype(int)
    assert np.abs(ijk[:3] - index).max() < 1e-3, "read voxels fall between case voxels"
    i, j, k = index
    nz, ny, nx = case.image.shape
    assert (i >= 0).all() and (i < nx).all() and (j >= 0).all() and (j < ny).all()
    assert (k >= 0).all() and (k < nz).all()
    if full:
        assert len(set(zip(i, j, k, strict=True))) == case.image.size
    np.testing.assert_array_equal(read.volume.ravel(), case.image[k, j, i].astype(np.float64))


# ------------------------------------------------------------------------ determinism


@pytest.mark.requirement("SRS-025")
def test_generate_case_is_deterministic() -> None:
    for modality in Modality:
        first = generate_case(3, modality, fov_mm=SMALL_FOV)
        again = generate_case(3, modality, fov_mm=SMALL_FOV)
        other = generate_case(4, modality, fov_mm=SMALL_FOV)
        np.testing.assert_array_equal(first.image, again.image)
        np.testing.assert_array_equal(first.mask, again.mask)
        assert first.geometry == again.geometry
        assert first.image.shape != other.image.shape or not np.array_equal(
            first.image, other.image
        )


@pytest.mark.parametrize("quirks", ["plain", "all"])
@pytest.mark.parametrize("modality", list(Modality))
@pytest.mark.requirement("SRS-026")
def test_write_series_is_byte_identical(
    cases: dict[Modality, SyntheticCase], modality: Modality, quirks: str, tmp_path: Path
) -> None:
    first = write_series(cases[modality], tmp_path / "a", QUIRK_SETS[quirks])
    again = write_series(cases[modality], tmp_path / "b", QUIRK_SETS[quirks])
    assert first.sop_instance_uids == again.sop_instance_uids
    assert [p.name for p in first.files] == [p.name for p in again.files]
    assert sha256_by_name(tmp_path / "a") == sha256_by_name(tmp_path / "b")
    n_files = len(first.files) + len(first.localizer_files)
    assert len(list((tmp_path / "a").iterdir())) == n_files


@pytest.mark.requirement("SRS-026")
def test_uids_are_unique_and_follow_inputs(
    cases: dict[Modality, SyntheticCase], tmp_path: Path
) -> None:
    written = [
        write_series(cases[Modality.CT], tmp_path / name, quirks)
        for name, quirks in QUIRK_SETS.items()
    ]
    series_uids = [w.series_instance_uid for w in written]
    sop_uids = [
        uid for w in written for uid in (*w.sop_instance_uids, *w.localizer_sop_instance_uids)
    ]
    assert len(set(series_uids)) == len(series_uids)
    assert len(set(sop_uids)) == len(sop_uids)
    assert len({w.study_instance_uid for w in written}) == 1
    other = write_series(generate_case(8, Modality.CT, fov_mm=SMALL_FOV), tmp_path / "seed8")
    assert other.study_instance_uid != written[0].study_instance_uid


# ---------------------------------------------------------------------------- dciodvfy


@pytest.mark.peer
@pytest.mark.parametrize("quirks", list(QUIRK_SETS))
@pytest.mark.parametrize("modality", list(Modality))
@pytest.mark.requirement("SRS-026")
def test_every_file_passes_dciodvfy(
    cases: dict[Modality, SyntheticCase], modality: Modality, quirks: str, tmp_path: Path
) -> None:
    # dciodvfy takes ~5 ms a file, so every file of every variant is checked.
    written = write_series(cases[modality], tmp_path, QUIRK_SETS[quirks])
    allowed: tuple[str, ...] = ()
    if modality is Modality.MR:
        for quirk, patterns in EXPECTED_WARNINGS.items():
            if getattr(QUIRK_SETS[quirks], quirk):
                allowed += patterns
    for path in (*written.files, *written.localizer_files):
        result = run_dciodvfy(path)
        assert result.errors == [], f"{path.name}:\n{result.output}"
        unexpected = [w for w in result.warnings if not any(a in w for a in allowed)]
        assert unexpected == [], f"{path.name}:\n{result.output}"


# ---------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("extra", ["plain", "jpeg_ls+rescale"])
@pytest.mark.parametrize("feet_first", [False, True], ids=["HFS", "FFS"])
@pytest.mark.parametrize("modality", list(Modality))
@pytest.mark.requirement("SRS-026")
def test_reader_recovers_case_voxels_in_lps(
    cases: dict[Modality, SyntheticCase],
    modality: Modality,
    feet_first: bool,
    extra: str,
    tmp_path: Path,
) -> None:
    case = cases[modality]
    encoded = extra != "plain"
    quirks = DicomQuirks(feet_first=feet_first, shuffle=True, jpeg_ls=encoded, rescale=encoded)
    written = write_series(case, tmp_path, quirks)
    read = read_volume(written.files)
    assert read.volume.shape == case.image.shape
    assert_matches_case(read, case, full=True)

    normal = np.asarray(case.geometry.slice_direction)
    origin = np.asarray(case.geometry.origin)
    for k, (path, uid) in enumerate(zip(written.files, written.sop_instance_uids, strict=True)):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.SOPInstanceUID == uid
        along = (np.asarray(ds.ImagePositionPatient, float) - origin) @ normal
        assert along == pytest.approx(k * case.geometry.spacing[0], abs=1e-4)
        assert ds.PatientPosition == ("FFS" if feet_first else "HFS")
        row = np.asarray(ds.ImageOrientationPatient[:3], float)
        expected_row = np.asarray(case.geometry.row_direction) * (-1 if feet_first else 1)
        np.testing.assert_allclose(row, expected_row)
        nz = case.image.shape[0]
        assert ds.InstanceNumber == (nz - k if feet_first else k + 1)


@pytest.mark.requirement("SRS-026")
def test_feet_first_stores_mirrored_pixels(
    cases: dict[Modality, SyntheticCase], tmp_path: Path
) -> None:
    case = cases[Modality.CT]
    hfs = write_series(case, tmp_path / "hfs")
    ffs = write_series(case, tmp_path / "ffs", DicomQuirks(feet_first=True))
    head = pydicom.dcmread(hfs.files[2]).pixel_array
    feet = pydicom.dcmread(ffs.files[2]).pixel_array
    assert not np.array_equal(head, feet)
    np.testing.assert_array_equal(head, feet[:, ::-1])


# ------------------------------------------------------------------------------ quirks


@pytest.mark.requirement("SRS-026")
def test_shuffle_hides_the_order(cases: dict[Modality, SyntheticCase], tmp_path: Path) -> None:
    written = write_series(cases[Modality.MR], tmp_path, DicomQuirks(shuffle=True))
    names = sorted(tmp_path.iterdir())
    assert all(re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", p.name) for p in names)
    numbers = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in names]
    assert numbers != sorted(numbers) and numbers != sorted(numbers, reverse=True)
    assert set(names) == set(written.files)


@pytest.mark.requirement("SRS-026")
def test_localizer_is_another_series_of_the_same_study(
    cases: dict[Modality, SyntheticCase], tmp_path: Path
) -> None:
    case = cases[Modality.CT]
    written = write_series(case, tmp_path, DicomQuirks(localizer=True))
    assert 1 <= len(written.localizer_files) <= 3
    axial = pydicom.dcmread(written.files[0], stop_before_pixels=True)
    assert "LOCALIZER" not in axial.ImageType
    for path in written.localizer_files:
        ds = pydicom.dcmread(path)
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        assert ds.SeriesInstanceUID == written.localizer_series_instance_uid
        assert ds.SeriesInstanceUID != axial.SeriesInstanceUID
        assert ds.SeriesNumber != axial.SeriesNumber
        assert ds.StudyInstanceUID == axial.StudyInstanceUID
        assert ds.FrameOfReferenceUID == axial.FrameOfReferenceUID
        normal = np.cross(*np.reshape(np.asarray(ds.ImageOrientationPatient, float), (2, 3)))
        assert abs(normal @ np.asarray(case.geometry.slice_direction)) < 1e-6  # not axial
        assert_matches_case(read_volume([path]), case, full=False)


@pytest.mark.parametrize("modality", list(Modality))
@pytest.mark.requirement("SRS-026")
def test_jpeg_ls_and_rescale_encode_losslessly(
    cases: dict[Modality, SyntheticCase], modality: Modality, tmp_path: Path
) -> None:
    case = cases[modality]
    quirks = DicomQuirks(jpeg_ls=True, rescale=True)
    written = write_series(case, tmp_path, quirks)
    assert written.transfer_syntax_uid == JPEGLSLossless
    for k, path in enumerate(written.files):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == JPEGLSLossless
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) != (1.0, 0.0)
        assert ds.PixelRepresentation == 0
        values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(values, case.image[k])
    plain = write_series(case, tmp_path / "plain")
    assert plain.transfer_syntax_uid == ExplicitVRLittleEndian
    ds = pydicom.dcmread(plain.files[0])
    assert ds.pixel_array.dtype == case.image.dtype


# ------------------------------------------------------------------------- API errors


@pytest.mark.requirement("SRS-026")
def test_identity_defaults_are_obviously_synthetic() -> None:
    identity = StudyIdentity.synthetic(7, "CT")
    assert identity.patient_name == "SYNTHETIC^CT^0007"
    assert identity == StudyIdentity.synthetic(7, Modality.CT)
    assert (
        identity.study_instance_uid != StudyIdentity.synthetic(7, "CT", "other").study_instance_uid
    )


@pytest.mark.requirement("SRS-026")
def test_bad_inputs_raise_clear_errors(
    cases: dict[Modality, SyntheticCase], tmp_path: Path
) -> None:
    case = cases[Modality.CT]
    with pytest.raises(ValueError, match="unknown modality"):
        write_series(replace(case, modality="US"), tmp_path / "us")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        write_series(replace(case, image=np.zeros((0, 4, 4), np.int16)), tmp_path / "empty")
    with pytest.raises(ValueError, match="differs from geometry"):
        write_series(replace(case, image=case.image[:-1]), tmp_path / "shape")
    with pytest.raises(ValueError, match="integers"):
        write_series(replace(case, image=case.image.astype(np.float32)), tmp_path / "float")
    with pytest.raises(ValueError, match="do not fit"):
        too_low = replace(case, image=np.full_like(case.image, -2000))
        write_series(too_low, tmp_path / "low", DicomQuirks(rescale=True))
    write_series(case, tmp_path / "twice")
    with pytest.raises(FileExistsError):
        write_series(case, tmp_path / "twice")


# ------------------------------------------------------------------------------ Orthanc


def write_study(cases: dict[Modality, SyntheticCase], folder: Path) -> list[WrittenSeries]:
    """Three series (+ a localizer) of one study in one folder, mixed transfer syntaxes."""
    identity = StudyIdentity.synthetic(7, "CT")
    return [
        write_series(cases[Modality.CT], folder, identity=identity, series_number=1),
        write_series(
            cases[Modality.CT],
            folder,
            DicomQuirks(jpeg_ls=True, localizer=True, shuffle=True),
            identity,
            series_number=2,
        ),
        write_series(cases[Modality.MR], folder, identity=identity, series_number=3),
    ]


@pytest.mark.peer
@pytest.mark.requirement("SRS-026")
def test_orthanc_files_a_multi_series_study_sent_by_storescu(
    cases: dict[Modality, SyntheticCase], orthanc: Orthanc, tmp_path: Path
) -> None:
    echoscu(orthanc.host, orthanc.dicom_port, orthanc.aet)
    written = write_study(cases, tmp_path / "study")
    storescu(orthanc.host, orthanc.dicom_port, orthanc.aet, tmp_path / "study")
    study_uid = written[0].study_instance_uid
    assert orthanc.studies() == [orthanc.study_id(study_uid)]
    sent = {u for w in written for u in (*w.sop_instance_uids, *w.localizer_sop_instance_uids)}
    instances = orthanc.instances_of_study(study_uid)
    assert (
        len(instances) == len(sent) == sum(len(w.files) + len(w.localizer_files) for w in written)
    )
    assert {i["MainDicomTags"]["SOPInstanceUID"] for i in instances} == sent
    assert len(orthanc.series_of_study(study_uid)) == 4
