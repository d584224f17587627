"""DICOM input: folder scan, series selection and series-to-volume, on synthetic series.

Volumes are checked against the synthetic case voxel by voxel through their geometry,
and against ``tests.peers.read_volume``, a naive reader written independently.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from operators.dicom_input import (
    DEFAULT_RULES,
    DicomScan,
    SelectionRules,
    SelectionRulesError,
    scan_dicom_folder,
    select_series,
    series_to_volume,
)
from operators.errors import (
    GeometryError,
    InputNotFoundError,
    NoImageSeriesError,
    NoQualifyingSeriesError,
    PipelineError,
    PixelDataError,
    VolumeTooLargeError,
)
from operators.values import SeriesVolume
from synthetic.case import SyntheticCase, generate_case
from synthetic.dicom_series import DicomQuirks, StudyIdentity, WrittenSeries, write_series
from tests.peers import read_volume

FOV = (10.0, 24.0, 24.0)
BUDGET = 1 << 30


@pytest.fixture(scope="module")
def ct() -> SyntheticCase:
    # Fixed spacing: the tests below count slices and voxels (10 x 53 x 53).
    return generate_case(11, "CT", spacing=(1.0, 0.453, 0.453), fov_mm=FOV)


@pytest.fixture(scope="module")
def mr() -> SyntheticCase:
    return generate_case(12, "MR", fov_mm=FOV)


def write(case: SyntheticCase, folder: Path, **quirks: bool) -> WrittenSeries:
    return write_series(case, folder, DicomQuirks(**quirks))


def rewrite(path: Path, change: Callable[[Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


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


# ------------------------------------------------------------------ scan and selection


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, ct: SyntheticCase) -> tuple[Path, dict]:
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


# ------------------------------------------------------------------------ bad inputs


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


def scan(folder: Path) -> DicomScan:
    return scan_dicom_folder(folder)


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


# ------------------------------------------------------------------------- rule format

SDK_EXAMPLE = """
{
    "selections": [
        {"name": "CT Series 1", "conditions": {"StudyDescription": "(?i)^Spleen",
            "Modality": "(?i)CT", "SeriesDescription": "(?i)^No series description|(.*?)"}},
        {"name": "CT Series 2", "conditions": {"Modality": "CT", "BodyPartExamined": "Abdomen",
            "SeriesDescription" : "Not to be matched. For illustration only."}},
        {"name": "CT Series 3", "conditions": {"StudyDescription": "(.*?)", "Modality": "(?i)CT",
            "ImageType": ["PRIMARY", "ORIGINAL", "AXIAL"], "SliceThickness": [3, 5]}},
        {"name": "CT Series 4", "conditions": {"StudyDescription": "(.*?)", "Modality": "(?i)CT",
            "ImageOrientationPatient": "Axial", "SliceThickness": [2, ">"]}},
        {"name": "CT Series 5", "conditions": {"StudyDescription": "(.*?)", "Modality": "(?i)CT",
            "ImageType": ["PRIMARY", "!SECONDARY"]}}
    ]
}
"""


def rule(**conditions: object) -> SelectionRules:
    return SelectionRules.from_json(
        json.dumps({"selections": [{"name": "r", "conditions": conditions}]})
    )


@pytest.mark.requirement("SRS-002")
def test_sdk_example_rules_parse_and_match(mixed: tuple[Path, dict], tmp_path: Path) -> None:
    folder, _ = mixed
    rules = SelectionRules.from_json(SDK_EXAMPLE)
    assert [r.name for r in rules.selections] == [f"CT Series {i}" for i in range(1, 6)]
    (tmp_path / "rules.json").write_text(SDK_EXAMPLE)
    assert SelectionRules.from_file(tmp_path / "rules.json") == rules
    selected = select_series(scan_dicom_folder(folder), rules)
    # Not Spleen, not Abdomen, slices thinner than 2 mm: only rule 5 (PRIMARY, not
    # SECONDARY) matches, localizer included; each series once, by series number.
    assert [(s.name, s.series_number) for s in selected] == [
        ("CT Series 5", 1),
        ("CT Series 5", 7),
        ("CT Series 5", 1001),
    ]


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"SeriesDescription": "synthetic ct angio"}, [1, 7]),  # equality, any case
        ({"SeriesDescription": "LOCAL"}, [1001]),  # regex search
        ({"SeriesDescription": "^ANGIO"}, []),
        ({"SeriesNumber": 7}, [7]),
        ({"SeriesNumber": [7, "<"]}, [1]),
        ({"SeriesNumber": [1, 1001]}, [1, 7, 1001]),
        ({"SeriesNumber": [2, 1000]}, [7]),
        ({"SeriesNumber": "1.*"}, [1, 1001]),  # a regex on a number matches it whole
        ({"NumberOfSeriesRelatedInstances": [10, ">="]}, [1, 7]),
        ({"ImageType": ["primary", "LOCALIZER"]}, [1001]),
        ({"ImageType": ["ORIGINAL", "!LOCALIZER"]}, [1, 7]),
        ({"ImageType": "!AXIAL"}, [1001]),
        ({"ImageType": ["PRIM"]}, []),  # whole values, not substrings
        ({"ImageOrientationPatient": "axial"}, [1, 7]),
        ({"ImageOrientationPatient": "Sagittal"}, []),  # the localizer is sagittal + coronal
        # An attribute the series lack: exclusions pass, anything else fails.
        ({"ContrastBolusAgent": "!IODINE"}, [1, 7, 1001]),
        ({"ContrastBolusAgent": ["!IODINE", "!GADOLINIUM"]}, [1, 7, 1001]),
        ({"ContrastBolusAgent": "IODINE"}, []),
        ({"ContrastBolusAgent": [1, ">"]}, []),
        ({"Modality": "CT", "ContrastBolusAgent": None}, [1, 7, 1001]),  # null is ignored
    ],
)
@pytest.mark.requirement("SRS-002")
def test_condition_matching(mixed: tuple[Path, dict], conditions: dict, expected: list) -> None:
    scan_result = scan_dicom_folder(mixed[0])
    try:
        selected = [s.series_number for s in select_series(scan_result, rule(**conditions))]
    except NoQualifyingSeriesError:
        selected = []
    assert selected == expected


@pytest.mark.requirement("SRS-002")
def test_default_rules_and_first_rule_wins(mixed: tuple[Path, dict]) -> None:
    assert [r.name for r in DEFAULT_RULES.selections] == ["CT volume", "MR volume"]
    rules = SelectionRules.from_json(
        json.dumps(
            {
                "selections": [
                    {"name": "series 7", "conditions": {"SeriesNumber": 7}},
                    {"name": "any CT", "conditions": {"Modality": "CT"}},
                ]
            }
        )
    )
    selected = select_series(scan_dicom_folder(mixed[0]), rules)
    assert [(s.name, s.series_number) for s in selected] == [
        ("series 7", 7),
        ("any CT", 1),
        ("any CT", 1001),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '{"selections": [{"name": "a", "conditions": {"Modalty": "CT"}}]}',
            "unknown DICOM keyword 'Modalty'",
        ),
        (
            '{"selections": [{"conditions": {"SliceThickness": [2, "=>"]}}]}',
            "unsupported relational operator '=>'",
        ),
        ('{"selections": [{"conditions": {"SliceThickness": [5, 3]}}]}', "low > high"),
        (
            '{"selections": [{"conditions": {"SeriesDescription": "(unclosed"}}]}',
            "not a valid regular expression",
        ),
        (
            '{"selections": [{"conditions": {"ImageOrientationPatient": "Oblique"}}]}',
            "Axial, Coronal, Sagittal",
        ),
        ('{"selections": [{"conditions": {"Modality": true}}]}', "unsupported condition True"),
        ('{"selections": [{"conditions": {"ImageType": ["A", 2, "B"]}}]}', "unsupported condition"),
        ('{"selections": [{"conditions": {}}]}', "at least one condition"),
        ('{"selections": []}', "at least one selection"),
        ('{"selections": [{"condition": {"Modality": "CT"}}]}', "selections.0.condition"),
        ('{"selections": [', "Invalid JSON"),
    ],
)
@pytest.mark.requirement("SRS-002", "SRS-014")
def test_malformed_rules_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(SelectionRulesError) as caught:
        SelectionRules.from_json(text)
    assert fragment in caught.value.message
    assert caught.value.exit_code == 78  # EX_CONFIG


@pytest.mark.requirement("SRS-002")
def test_rules_from_parsed_json() -> None:
    data = json.loads(SDK_EXAMPLE)
    assert SelectionRules.from_data(data) == SelectionRules.from_json(SDK_EXAMPLE)
    data["selections"][1]["conditions"]["SliceThickness"] = [1, "~"]
    with pytest.raises(SelectionRulesError, match=r"selections\.1\.conditions.*'~'"):
        SelectionRules.from_data(data)


@pytest.mark.requirement("SRS-002", "SRS-014")
def test_rules_file_missing(tmp_path: Path) -> None:
    with pytest.raises(SelectionRulesError, match="cannot read selection rules file"):
        SelectionRules.from_file(tmp_path / "absent.json")


@pytest.mark.requirement("SRS-001")
def test_duplicate_file_copies_are_skipped(tmp_path: Path, ct: SyntheticCase) -> None:
    written = write(ct, tmp_path / "in")
    shutil.copy(written.files[0], tmp_path / "in" / "copy-of-first")
    scan_result = scan_dicom_folder(tmp_path / "in")
    assert [len(s.instances) for s in scan_result.all_series] == [10]
    assert [Path(s.path).name for s in scan_result.skipped] == ["copy-of-first"]
    assert "duplicate of SOP Instance UID" in scan_result.skipped[0].reason
