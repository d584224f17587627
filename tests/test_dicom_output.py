"""DICOM writers (operators.dicom_output): UIDs and series numbers, refused inputs, real
DICOM peers (dcentvfy, Orthanc as the PACS).

The source series come from the synthetic generator, written head first (HFS) and feet
first (FFS, row vector reversed). A deliberately naive, test-local loader turns them into
``SeriesVolume`` objects; the vessel mask is an asymmetric phantom defined in patient
(LPS) coordinates, so any flip, transposition or slice-order mix-up in the writers shows
up as pixels that disagree with the phantom at their own LPS positions.

The Segmentation objects: tests/test_dicom_output_segmentation.py; the Parametric Maps and
the measurement report: tests/test_dicom_output_report.py; what they share:
tests/dicom_output_support.py.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from operators.dicom_output import (
    DicomOutputError,
    OutputKind,
    OutputSettings,
    UncertaintyQuantity,
    build_measurement_report,
    build_uncertainty_map,
    build_vessel_segmentation,
)
from operators.values import SeriesVolume
from synthetic.case import SyntheticCase
from synthetic.dicom_series import WrittenSeries
from tests.dicom_output_support import (  # the *_fixture names: the module's fixtures
    case_fixture,  # noqa: F401
    make_result,
    volumes_fixture,  # noqa: F401
    written_fixture,  # noqa: F401
)
from tests.peers import PEER_ENV, Orthanc, require_executable, storescu

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
