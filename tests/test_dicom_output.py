"""DICOM writers (operators.dicom_output): validity, codes, geometry, a real PACS.

The source series come from the synthetic generator, written head first (HFS) and feet
first (FFS, row vector reversed). A deliberately naive, test-local loader turns them into
``SeriesVolume`` objects; the vessel mask is an asymmetric phantom defined in patient
(LPS) coordinates, so any flip, transposition or slice-order mix-up in the writers shows
up as pixels that disagree with the phantom at their own LPS positions.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from operators.dicom_input.loader import scan_dicom_folder
from operators.dicom_input.selection import select_series
from operators.dicom_input.volume import series_to_volume
from operators.dicom_output import (
    DicomOutputError,
    OutputKind,
    OutputSettings,
    UncertaintyQuantity,
    build_measurement_report,
    build_uncertainty_map,
    build_vessel_segmentation,
)
from operators.values import SegmentationResult, SeriesVolume
from synthetic.case import SyntheticCase, generate_case
from synthetic.dicom_series import DicomQuirks, WrittenSeries, write_series
from tests.peers import PEER_ENV, Orthanc, assert_dicom_valid, require_executable, storescu

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
MEMBERS = ("segresnet-a", "segresnet-b", "unet-c")
ORIENTATIONS = ("HFS", "FFS")


# ----------------------------------------------------------------------------- inputs


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


@pytest.fixture(scope="module")
def case() -> SyntheticCase:
    return generate_case(11, "CT", fov_mm=(10.0, 24.0, 24.0))


@pytest.fixture(scope="module")
def written(
    case: SyntheticCase, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, WrittenSeries]:
    root = tmp_path_factory.mktemp("sources")
    return {
        "HFS": write_series(case, root / "hfs", DicomQuirks()),
        "FFS": write_series(case, root / "ffs", DicomQuirks(feet_first=True)),
    }


@pytest.fixture(scope="module")
def volumes(written: dict[str, WrittenSeries]) -> dict[str, SeriesVolume]:
    return {name: load_series(series.files) for name, series in written.items()}


def reread(dataset: Dataset, path: Path) -> Dataset:
    """Save as a Part 10 file (what dciodvfy and the PACS see) and read it back."""
    dataset.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def code_of(item: Dataset) -> tuple[str, str]:
    return (str(item.CodeValue), str(item.CodingSchemeDesignator))


# ----------------------------------------------------------------------- segmentation


@pytest.mark.peer
@pytest.mark.parametrize("fractional", [False, True], ids=["binary", "fractional"])
@pytest.mark.requirement("SRS-008")
def test_segmentation_is_valid_coded_and_in_the_source_study(
    case: SyntheticCase, volumes: dict[str, SeriesVolume], tmp_path: Path, fractional: bool
) -> None:
    volume = volumes["FFS"]
    result = make_result(case, volume)
    seg = reread(build_vessel_segmentation(volume, result, fractional=fractional), tmp_path / "s")
    assert_dicom_valid(tmp_path / "s")

    assert seg.SOPClassUID == SEG_STORAGE
    assert seg.SegmentationType == ("FRACTIONAL" if fractional else "BINARY")
    assert seg.StudyInstanceUID == volume.study_instance_uid
    assert seg.FrameOfReferenceUID == volume.frame_of_reference_uid
    assert seg.SeriesInstanceUID != volume.series_instance_uid
    assert seg.SeriesNumber != volume.source_datasets[0].SeriesNumber
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [
        volume.series_instance_uid
    ]
    assert int(seg.NumberOfFrames) == volume.voxels.shape[0]  # empty frames kept
    (segment,) = seg.SegmentSequence
    assert code_of(segment.SegmentedPropertyCategoryCodeSequence[0]) == ("91723000", "SCT")
    assert code_of(segment.SegmentedPropertyTypeCodeSequence[0]) == ("59820001", "SCT")
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert code_of(algorithm.AlgorithmFamilyCodeSequence[0]) == ("123110", "DCM")
    assert algorithm.AlgorithmName == result.model_name
    assert algorithm.AlgorithmVersion == result.model_version
    assert all(member in algorithm.AlgorithmParameters for member in MEMBERS)
    assert "REVIEW" not in seg.SeriesDescription and "REVIEW" not in seg.ContentLabel


def frame_lps(seg: Dataset, frame: Dataset) -> np.ndarray:
    """(rows, columns, 3) LPS centres of a frame's pixels, from the SEG's own geometry."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    row_spacing, column_spacing = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
    r, c = np.meshgrid(np.arange(seg.Rows), np.arange(seg.Columns), indexing="ij")
    return ipp + c[..., None] * column_spacing * iop[:3] + r[..., None] * row_spacing * iop[3:]


def vessel_voxels(case: SyntheticCase, seg: Dataset) -> set[tuple[int, ...]]:
    """Case voxels (i, j, k) under the SEG's non-zero pixels, located through LPS."""
    voxels = set()
    for frame, pixels in zip(seg.PerFrameFunctionalGroupsSequence, seg.pixel_array, strict=True):
        if not pixels.any():
            continue
        for index in case_index(case, frame_lps(seg, frame)[pixels > 0]):
            voxels.add(tuple(int(v) for v in index))
    return voxels


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.requirement("SRS-009")
def test_segmentation_frames_sit_on_their_source_slices(
    case: SyntheticCase, volumes: dict[str, SeriesVolume], tmp_path: Path, orientation: str
) -> None:
    volume = volumes[orientation]
    result = make_result(case, volume)
    seg = reread(build_vessel_segmentation(volume, result), tmp_path / "seg")
    by_uid = {ds.SOPInstanceUID: ds for ds in volume.source_datasets}
    source_iop = np.asarray(volume.source_datasets[0].ImageOrientationPatient, float)
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(
        np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float), source_iop
    )
    pixels = seg.pixel_array
    referenced = []
    for n, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        (derivation,) = frame.DerivationImageSequence
        uid = derivation.SourceImageSequence[0].ReferencedSOPInstanceUID
        referenced.append(uid)
        source = by_uid[uid]
        np.testing.assert_allclose(
            np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float),
            np.asarray(source.ImagePositionPatient, float),
            atol=1e-4,
        )
        expected = phantom(case, frame_lps(seg, frame))
        np.testing.assert_array_equal(pixels[n], expected, err_msg=f"frame {n + 1}")
    assert sorted(referenced) == sorted(by_uid), "every source slice gets exactly one frame"
    assert pixels.sum() == result.mask.sum() > 0


@pytest.mark.requirement("SRS-009", "SRS-003")
def test_hfs_and_ffs_segmentations_mark_the_same_patient_positions(
    case: SyntheticCase, volumes: dict[str, SeriesVolume], tmp_path: Path
) -> None:
    points = {
        name: vessel_voxels(
            case, reread(build_vessel_segmentation(v, make_result(case, v)), tmp_path / name)
        )
        for name, v in volumes.items()
    }
    assert points["HFS"] == points["FFS"]
    assert len(points["HFS"]) == int(make_result(case, volumes["HFS"]).mask.sum())


@pytest.mark.requirement("SRS-008", "SRS-009")
def test_fractional_segmentation_holds_the_probability_of_each_source_slice(
    case: SyntheticCase, volumes: dict[str, SeriesVolume], tmp_path: Path
) -> None:
    volume = volumes["FFS"]
    result = make_result(case, volume)
    seg = reread(build_vessel_segmentation(volume, result, fractional=True), tmp_path / "f")
    k_of = {ds.SOPInstanceUID: k for k, ds in enumerate(volume.source_datasets)}
    assert int(seg.MaximumFractionalValue) == 255
    for frame, pixels in zip(seg.PerFrameFunctionalGroupsSequence, seg.pixel_array, strict=True):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        expected = result.mean_probability[k_of[uid]] * 255
        assert np.abs(pixels.astype(float) - expected).max() <= 0.5 + 1e-3


# ---------------------------------------------------------------------- parametric map


@pytest.mark.peer
@pytest.mark.parametrize("quantity", list(UncertaintyQuantity))
@pytest.mark.requirement("SRS-010", "SRS-007")
def test_uncertainty_map_is_valid_and_aligned(
    case: SyntheticCase,
    volumes: dict[str, SeriesVolume],
    tmp_path: Path,
    quantity: UncertaintyQuantity,
) -> None:
    volume = volumes["FFS"]
    result = make_result(case, volume)
    pm = reread(build_uncertainty_map(volume, result, quantity), tmp_path / "pm")
    assert_dicom_valid(tmp_path / "pm")
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert pm.StudyInstanceUID == volume.study_instance_uid
    assert pm.FrameOfReferenceUID == volume.frame_of_reference_uid
    assert "FloatPixelData" in pm and pm.BitsAllocated == 32
    shared = pm.SharedFunctionalGroupsSequence[0]
    mapping = shared.RealWorldValueMappingSequence[0]
    assert code_of(mapping.MeasurementUnitsCodeSequence[0]) == ("{nats}", "UCUM")
    assert mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodingSchemeDesignator
    assert pm.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99MINIVESS"
    k_of = {ds.SOPInstanceUID: k for k, ds in enumerate(volume.source_datasets)}
    values = getattr(result, quantity.value)
    assert int(pm.NumberOfFrames) == len(k_of)
    for frame, pixels in zip(pm.PerFrameFunctionalGroupsSequence, pm.pixel_array, strict=True):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = k_of[uid]
        np.testing.assert_allclose(
            np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float),
            np.asarray(volume.source_datasets[k].ImagePositionPatient, float),
            atol=1e-4,
        )
        np.testing.assert_array_equal(pixels, values[k])


# ------------------------------------------------------------------ measurement report


def content_items(dataset: Dataset) -> Iterator[Dataset]:
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from content_items(item)


def items_named(dataset: Dataset, code: tuple[str, str]) -> list[Dataset]:
    return [
        item
        for item in content_items(dataset)
        if "ConceptNameCodeSequence" in item and code_of(item.ConceptNameCodeSequence[0]) == code
    ]


@pytest.mark.peer
@pytest.mark.parametrize("ood", [False, True], ids=["in-distribution", "ood"])
@pytest.mark.requirement("SRS-011", "SRS-007")
def test_measurement_report_holds_volume_uncertainty_and_review_flag(
    case: SyntheticCase, volumes: dict[str, SeriesVolume], tmp_path: Path, ood: bool
) -> None:
    volume = volumes["HFS"]
    result = make_result(case, volume, ood=ood)
    assert result.out_of_distribution is ood
    seg = build_vessel_segmentation(volume, result)
    sr = reread(build_measurement_report(volume, result, seg), tmp_path / "sr")
    assert_dicom_valid(tmp_path / "sr")

    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.StudyInstanceUID == volume.study_instance_uid
    assert code_of(sr.ConceptNameCodeSequence[0]) == ("126000", "DCM")  # TID 1500 title
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    (volume_item,) = items_named(sr, ("118565006", "SCT"))
    measured = volume_item.MeasuredValueSequence[0]
    assert code_of(measured.MeasurementUnitsCodeSequence[0]) == ("mL", "UCUM")
    dz, dy, dx = volume.geometry.spacing
    expected_ml = int(result.mask.sum()) * dz * dy * dx / 1000.0
    assert expected_ml > 0
    assert float(measured.NumericValue) == pytest.approx(expected_ml, rel=1e-6)
    (score_item,) = items_named(sr, ("DISAGREE", "99MINIVESS"))
    score = score_item.MeasuredValueSequence[0]
    assert float(score.NumericValue) == pytest.approx(result.uncertainty_score, rel=1e-6)
    assert code_of(score.MeasurementUnitsCodeSequence[0]) == ("1", "UCUM")
    (flag,) = items_named(sr, ("REVIEW", "99MINIVESS"))
    answer = code_of(flag.ConceptCodeSequence[0])
    assert answer == (("373066001", "SCT") if ood else ("373067005", "SCT"))
    observer_type = items_named(sr, ("121005", "DCM"))[0]  # Observer Type
    assert code_of(observer_type.ConceptCodeSequence[0]) == ("121007", "DCM")  # Device
    assert code_of(items_named(sr, ("121058", "DCM"))[0].ConceptCodeSequence[0]) == (
        "77343006",
        "SCT",
    )  # Procedure reported: Angiography
    texts = {str(item.get("TextValue", "")) for item in content_items(sr)}
    assert result.model_version in texts and result.model_name in texts
    assert {f"member={m}" for m in MEMBERS} <= texts
    (segment_ref,) = items_named(sr, ("121191", "DCM"))
    ref = segment_ref.ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == seg.SOPInstanceUID
    assert int(ref.ReferencedSegmentNumber) == 1
    (source_series,) = items_named(sr, ("121232", "DCM"))
    assert volume.series_instance_uid == source_series.UID
    evidence = {
        s.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in s.ReferencedSOPSequence}
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for s in study.ReferencedSeriesSequence
    }
    assert evidence[seg.SeriesInstanceUID] == {seg.SOPInstanceUID}
    assert evidence[volume.series_instance_uid] == set(volume.sop_instance_uids)
    # The flag is visible where a reader looks first, in every object.
    pm = build_uncertainty_map(volume, result)
    for obj in (sr, seg, pm):
        assert obj.SeriesDescription.startswith("REVIEW") is ood
    assert seg.ContentLabel.endswith("_REVIEW") is ood
    assert seg.ContentDescription.startswith("REVIEW") is ood


@pytest.mark.peer
@pytest.mark.requirement("SRS-008", "SRS-010", "SRS-011")
def test_an_empty_result_still_gives_valid_objects(
    case: SyntheticCase, volumes: dict[str, SeriesVolume], tmp_path: Path
) -> None:
    """No vessel found is an answer too: a SEG of empty frames and a 0 mL report."""
    volume = volumes["FFS"]
    result = make_result(case, volume)
    result = replace(result, mask=np.zeros_like(result.mask))
    seg = build_vessel_segmentation(volume, result)
    assert int(seg.NumberOfFrames) == volume.voxels.shape[0]
    sr = build_measurement_report(volume, result, seg)
    for name, obj in (("seg", seg), ("sr", sr)):
        reread(obj, tmp_path / name)
        assert_dicom_valid(tmp_path / name)
    (volume_item,) = items_named(sr, ("118565006", "SCT"))
    assert float(volume_item.MeasuredValueSequence[0].NumericValue) == 0.0


# ------------------------------------------------------------------- UIDs and numbers


@pytest.mark.requirement("SRS-012")
def test_uids_are_deterministic_per_series_kind_and_model_version(
    case: SyntheticCase, volumes: dict[str, SeriesVolume]
) -> None:
    volume = volumes["HFS"]
    result = make_result(case, volume)
    first = build_vessel_segmentation(volume, result)
    again = build_vessel_segmentation(volume, result)
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (
        again.SOPInstanceUID,
        again.SeriesInstanceUID,
    )
    newer = build_vessel_segmentation(volume, replace(result, model_version="2.2.0"))
    assert newer.SOPInstanceUID != first.SOPInstanceUID
    other_series = build_vessel_segmentation(volumes["FFS"], make_result(case, volumes["FFS"]))
    assert other_series.SOPInstanceUID != first.SOPInstanceUID
    objects = [
        first,
        build_vessel_segmentation(volume, result, fractional=True),
        *(build_uncertainty_map(volume, result, q) for q in UncertaintyQuantity),
        build_measurement_report(volume, result, first),
    ]
    assert len({o.SOPInstanceUID for o in objects}) == len(objects)
    assert len({o.SeriesInstanceUID for o in objects}) == len(objects)
    numbers = [int(o.SeriesNumber) for o in objects]
    assert len(set(numbers)) == len(numbers)
    assert int(volume.source_datasets[0].SeriesNumber) not in numbers


@pytest.mark.requirement("SRS-012")
def test_series_number_never_equals_the_source_series_number(
    case: SyntheticCase, volumes: dict[str, SeriesVolume]
) -> None:
    volume = volumes["HFS"]
    source_number = int(volume.source_datasets[0].SeriesNumber)
    settings = OutputSettings()
    clash = settings.series[OutputKind.SEGMENTATION].model_copy(update={"number": source_number})
    settings = settings.model_copy(update={"series": {**settings.series, "seg": clash}})
    seg = build_vessel_segmentation(volume, make_result(case, volume), settings)
    assert int(seg.SeriesNumber) != source_number


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r, v: (replace(r, mask=r.mask[:, :-1]), v), "mask has shape"),
        (lambda r, v: (replace(r, mask=r.mask * 2), v), "only 0 and 1"),
        (lambda r, v: (replace(r, model_version=""), v), "names no model"),
        (lambda r, v: (r, replace(v, source_datasets=())), "no source datasets"),
        (lambda r, v: (r, replace(v, source_datasets=v.source_datasets[1:])), "source datasets"),
        (lambda r, v: (replace(r, model_name="x" * 65), v), "model name must be"),
    ],
    ids=["mask-shape", "mask-values", "no-version", "no-sources", "missing-slice", "long-name"],
)
@pytest.mark.requirement("SRS-008", "SRS-014")
def test_segmentation_rejects_bad_inputs(
    case: SyntheticCase, volumes: dict[str, SeriesVolume], change, message: str
) -> None:
    volume = volumes["HFS"]
    with pytest.raises(DicomOutputError, match=message) as raised:
        # The values reject what breaks their own invariants as they are made.
        result, volume = change(make_result(case, volume), volume)
        build_vessel_segmentation(volume, result)
    assert raised.value.exit_code == 30


@pytest.mark.requirement("SRS-009", "SRS-010")
def test_writers_reject_bad_maps_and_mismatched_segmentations(
    case: SyntheticCase, volumes: dict[str, SeriesVolume]
) -> None:
    volume = volumes["HFS"]
    result = make_result(case, volume)
    with pytest.raises(DicomOutputError, match=r"mean_probability must lie in \[0, 1\]"):
        too_likely = replace(result, mean_probability=result.mean_probability + 0.5)
        build_vessel_segmentation(volume, too_likely, fractional=True)
    nan_mi = result.mutual_information.copy()
    nan_mi[0, 0, 0] = np.nan
    with pytest.raises(DicomOutputError, match="mutual_information holds NaN"):
        build_uncertainty_map(volume, replace(result, mutual_information=nan_mi))
    with pytest.raises(DicomOutputError, match="predictive_entropy must be >= 0"):
        negative = replace(result, predictive_entropy=result.predictive_entropy - 1.0)
        build_uncertainty_map(volume, negative, "predictive_entropy")
    with pytest.raises(DicomOutputError, match="unknown quantity 'variance'"):
        build_uncertainty_map(volume, result, "variance")
    other_seg = build_vessel_segmentation(volumes["FFS"], make_result(case, volumes["FFS"]))
    with pytest.raises(DicomOutputError, match="does not reference the volume's series"):
        build_measurement_report(volume, result, other_seg)


# -------------------------------------------------------------------- real DICOM peers


def write_outputs(
    case: SyntheticCase, written: WrittenSeries, volume: SeriesVolume, out: Path
) -> list[Path]:
    result = make_result(case, volume, ood=True)
    seg = build_vessel_segmentation(volume, result)
    objects = {
        "seg.dcm": seg,
        "pm.dcm": build_uncertainty_map(volume, result),
        "sr.dcm": build_measurement_report(volume, result, seg),
    }
    out.mkdir()
    for name, obj in objects.items():
        obj.save_as(out / name, enforce_file_format=True)
    return [out / name for name in objects]


@pytest.mark.peer
@pytest.mark.requirement("SRS-008")
def test_dcentvfy_finds_no_entity_conflicts(
    case: SyntheticCase,
    written: dict[str, WrittenSeries],
    volumes: dict[str, SeriesVolume],
    tmp_path: Path,
) -> None:
    outputs = write_outputs(case, written["FFS"], volumes["FFS"], tmp_path / "out")
    exe = require_executable("dcentvfy")
    files = [*map(str, written["FFS"].files), *map(str, outputs)]
    done = subprocess.run(
        [exe, *files], capture_output=True, text=True, timeout=60, env=PEER_ENV, check=False
    )
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)


@pytest.mark.peer
@pytest.mark.requirement("SRS-008", "SRS-012")
def test_orthanc_files_source_and_outputs_into_one_study(
    case: SyntheticCase,
    written: dict[str, WrittenSeries],
    volumes: dict[str, SeriesVolume],
    orthanc: Orthanc,
    tmp_path: Path,
) -> None:
    source = written["FFS"]
    outputs = write_outputs(case, source, volumes["FFS"], tmp_path / "out")
    storescu(orthanc.host, orthanc.dicom_port, orthanc.aet, [*source.files, *outputs])
    assert len(orthanc.studies()) == 1
    series = orthanc.series_of_study(source.study_instance_uid)
    modalities = sorted(s["MainDicomTags"]["Modality"] for s in series)
    assert modalities == ["CT", "OT", "SEG", "SR"]  # highdicom: a Parametric Map is OT
    counts = {s["MainDicomTags"]["Modality"]: len(s["Instances"]) for s in series}
    assert counts == {"CT": len(source.files), "SEG": 1, "OT": 1, "SR": 1}
    stored = {i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.instances_of_study(
        source.study_instance_uid
    )}  # fmt: skip
    assert {pydicom.dcmread(p).SOPInstanceUID for p in outputs} <= stored


@pytest.mark.requirement("SRS-009")
def test_segread_round_trip_gives_the_mask_back(
    case: SyntheticCase, volumes: dict[str, SeriesVolume]
) -> None:
    """highdicom's own reader agrees: source-indexed frames reproduce the mask."""
    volume = volumes["FFS"]
    result = make_result(case, volume)
    buffer = io.BytesIO()
    build_vessel_segmentation(volume, result).save_as(buffer, enforce_file_format=True)
    seg = hd.seg.segread(io.BytesIO(buffer.getvalue()))
    array = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(volume.sop_instance_uids), segment_numbers=[1]
    )
    np.testing.assert_array_equal(array[..., 0], result.mask)
