"""DICOM Segmentation objects (operators.dicom_output): valid, coded, in the source study,
and every frame on its source slice, for HFS and FFS sources alike; binary and fractional;
highdicom's own reader gives the mask back.

What the DICOM writer tests share: tests/dicom_output_support.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset

from operators.dicom_output import build_vessel_segmentation
from operators.values import SeriesVolume
from synthetic.case import SyntheticCase
from tests.dicom_output_support import (  # the *_fixture names: the module's fixtures
    MEMBERS,
    case_fixture,  # noqa: F401
    case_index,
    code_of,
    make_result,
    phantom,
    reread,
    volumes_fixture,  # noqa: F401
    written_fixture,  # noqa: F401
)
from tests.peers import assert_dicom_valid

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
ORIENTATIONS = ("HFS", "FFS")


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
