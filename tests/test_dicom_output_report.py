"""DICOM Parametric Maps of the uncertainty and the Comprehensive 3D SR measurement report
(operators.dicom_output): valid, aligned with the source slices, holding the vessel
volume, the uncertainty score and the review flag; an empty result still gives valid
objects.

What the DICOM writer tests share: tests/dicom_output_support.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from operators.dicom_output import (
    UncertaintyQuantity,
    build_measurement_report,
    build_uncertainty_map,
    build_vessel_segmentation,
)
from operators.values import SeriesVolume
from synthetic.case import SyntheticCase
from tests.dicom_output_support import (  # the *_fixture names: the module's fixtures
    MEMBERS,
    case_fixture,  # noqa: F401
    code_of,
    make_result,
    reread,
    volumes_fixture,  # noqa: F401
    written_fixture,  # noqa: F401
)
from tests.peers import assert_dicom_valid

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
