"""``python -m map_app`` end to end: DICOM and NIfTI in, outputs, exit codes for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from map_app.__main__ import main as map_main
from models.manifest import read_manifest
from operators.nifti.io import write_nifti
from synthetic.case import Modality, generate_case
from synthetic.dicom_series import DicomQuirks, StudyIdentity, write_series
from tests.peers import assert_dicom_valid

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models" / "ensemble"
SMALL_FOV = (12.0, 24.0, 24.0)


def _run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "map_app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def two_series_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One study: a plain CT series, a JPEG-LS CT series with a localizer, junk files."""
    folder = tmp_path_factory.mktemp("study")
    case = generate_case(11, Modality.CT, fov_mm=SMALL_FOV)
    identity = StudyIdentity.synthetic(11, Modality.CT, "multi")
    write_series(case, folder, DicomQuirks(shuffle=True), identity, series_number=1)
    write_series(
        case,
        folder,
        DicomQuirks(shuffle=True, jpeg_ls=True, localizer=True),
        identity,
        series_number=2,
    )
    (folder / "notes.txt").write_text("not DICOM")
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    return folder


@pytest.mark.requirement("SRS-002", "SRS-006", "SRS-023")
def test_every_qualifying_series_is_processed(two_series_study: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert map_main(["-i", str(two_series_study), "-o", str(out), "-m", str(MODELS)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "done"
    assert len(report["series"]) == 2  # the localizer is not one of them
    assert {Path(s["path"]).name for s in report["skipped_inputs"]} == {"notes.txt", "broken.dcm"}
    manifest = read_manifest(MODELS)
    assert report["model"]["members"] == {m.name: m.sha256 for m in manifest.members}
    assert {"load", "select", "volume", "inference", "uncertainty", "write SEG"} <= set(
        report["timings_s"]
    )
    study_uids = set()
    for series in report["series"]:
        assert set(series["outputs"]) == {"seg", "uncertainty_map", "sr"}
        for path in series["outputs"].values():
            assert_dicom_valid(Path(path))
            study_uids.add(str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID))
        seg = pydicom.dcmread(series["outputs"]["seg"], stop_before_pixels=True)
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series["series_instance_uid"]
    assert len(study_uids) == 1  # all outputs go into the source study


@pytest.mark.requirement("SRS-006", "SRS-005")
def test_both_series_get_the_same_answer(two_series_study: Path, tmp_path: Path) -> None:
    """The JPEG-LS copy of a series decodes to the same voxels, so the same segmentation."""
    out = tmp_path / "out"
    assert map_main(["-i", str(two_series_study), "-o", str(out)]) == 0
    series = json.loads((out / "report.json").read_text())["series"]
    masks = [pydicom.dcmread(s["outputs"]["seg"]).pixel_array for s in series]
    assert np.array_equal(masks[0], masks[1])
    assert series[0]["uncertainty_score"] == series[1]["uncertainty_score"]


@pytest.mark.requirement("SRS-013")
def test_nifti_research_input(tmp_path: Path) -> None:
    case = generate_case(12, Modality.MR, fov_mm=SMALL_FOV)
    source = tmp_path / "mr-case.nii.gz"
    write_nifti(source, case.image, case.geometry)
    out = tmp_path / "out"
    assert map_main(["-i", str(source), "-o", str(out)]) == 0
    import nibabel as nib

    mask = nib.load(str(out / "mr-case_vessel_mask.nii.gz"))
    assert mask.shape == case.image.transpose(2, 1, 0).shape
    assert np.allclose(mask.affine, nib.load(str(source)).affine)
    assert (out / "mr-case_mutual_information.nii.gz").is_file()
    assert json.loads((out / "report.json").read_text())["input_kind"] == "nifti"


@pytest.mark.requirement("SRS-023")
def test_holoscan_environment_variables_in_a_subprocess(tmp_path: Path) -> None:
    case = generate_case(13, Modality.CT, fov_mm=SMALL_FOV)
    write_series(case, tmp_path / "in")
    result = _run_cli(
        [],
        env={
            "HOLOSCAN_INPUT_PATH": str(tmp_path / "in"),
            "HOLOSCAN_OUTPUT_PATH": str(tmp_path / "out"),
            "HOLOSCAN_MODEL_PATH": str(MODELS),
        },
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads((tmp_path / "out" / "report.json").read_text())["status"] == "done"


@pytest.fixture
def small_series(tmp_path: Path) -> Path:
    write_series(generate_case(14, Modality.CT, fov_mm=SMALL_FOV), tmp_path / "in")
    return tmp_path / "in"


def _expect_failure(
    args: list[str], code: int, message: str, capsys: pytest.CaptureFixture, out: Path | None = None
) -> None:
    assert map_main(args) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if out is not None:
        report = json.loads((out / "report.json").read_text())
        assert report["status"] == "failed" and message in report["error"]


@pytest.mark.requirement("SRS-014", "SRS-023")
def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _expect_failure(
        ["-i", str(tmp_path / "nope"), "-o", str(tmp_path / "out")],
        15,
        "input not found",
        capsys,
        tmp_path / "out",
    )


@pytest.mark.requirement("SRS-014")
def test_no_image_series(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("hello")
    _expect_failure(
        ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")], 10, "no-image-series", capsys
    )


@pytest.mark.requirement("SRS-014", "SRS-002")
def test_no_qualifying_series(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case = generate_case(15, Modality.CT, fov_mm=SMALL_FOV)
    written = write_series(case, tmp_path / "all", DicomQuirks(localizer=True))
    (tmp_path / "in").mkdir()
    for path in written.localizer_files:
        shutil.copy(path, tmp_path / "in")
    _expect_failure(
        ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")],
        11,
        "no-qualifying-series",
        capsys,
    )


@pytest.mark.requirement("SRS-014")
def test_truncated_pixel_data(
    small_series: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    victim = sorted(small_series.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-500])
    _expect_failure(["-i", str(small_series), "-o", str(tmp_path / "out")], 12, victim.name, capsys)


@pytest.mark.requirement("SRS-004", "SRS-014")
def test_single_slice(small_series: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for path in sorted(small_series.iterdir())[1:]:
        path.unlink()
    _expect_failure(
        ["-i", str(small_series), "-o", str(tmp_path / "out")], 13, "bad-geometry", capsys
    )


@pytest.mark.requirement("SRS-015")
def test_volume_over_memory_budget(
    small_series: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINIVESS_MEMORY_BUDGET_MB", "16")
    big = generate_case(16, Modality.CT, spacing=(0.5, 0.25, 0.25), fov_mm=(40.0, 64.0, 64.0))
    write_series(big, tmp_path / "big")
    _expect_failure(
        ["-i", str(tmp_path / "big"), "-o", str(tmp_path / "out")], 14, "memory budget", capsys
    )


@pytest.mark.requirement("SRS-016")
def test_tampered_model_stops_before_inference(
    small_series: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    victim = models / read_manifest(models).members[1].file
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    _expect_failure(
        ["-i", str(small_series), "-o", str(tmp_path / "out"), "-m", str(models)],
        20,
        victim.name,
        capsys,
    )
    assert not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.requirement("SRS-022")
def test_bad_configuration(
    small_series: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"overlap": 1.5}))
    _expect_failure(
        ["-i", str(small_series), "-o", str(tmp_path / "out"), "-c", str(config)],
        78,
        "overlap",
        capsys,
    )


@pytest.mark.requirement("SRS-023")
def test_model_path_may_be_the_map_models_root(small_series: Path, tmp_path: Path) -> None:
    """HOLOSCAN_MODEL_PATH=/opt/holoscan/models holds the ensemble in a named sub-folder."""
    root = tmp_path / "models"
    shutil.copytree(MODELS, root / "minivess-vessel-ensemble")
    assert map_main(["-i", str(small_series), "-o", str(tmp_path / "out"), "-m", str(root)]) == 0


@pytest.mark.requirement("SRS-022", "SRS-002")
def test_bad_selection_rules_are_a_configuration_error(
    small_series: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "config.json"
    rules = {"selections": [{"name": "typo", "conditions": {"Modalty": "CT"}}]}
    config.write_text(json.dumps({"selection_rules": rules}))
    _expect_failure(
        ["-i", str(small_series), "-o", str(tmp_path / "out"), "-c", str(config)],
        78,
        "Modalty",
        capsys,
    )


@pytest.mark.requirement("SRS-035")
def test_every_inference_is_audited_without_identifiers_in_clear(
    small_series: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compliance.audit import verify_chain
    from compliance.audit.__main__ import main as audit_main

    key = tmp_path / "site.key"
    assert audit_main(["keygen", "--hmac-key", str(key)]) == 0
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv("MINIVESS_AUDIT_LOG", str(log))
    monkeypatch.setenv("MINIVESS_AUDIT_HMAC_KEY_FILE", str(key))
    assert map_main(["-i", str(small_series), "-o", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["event_type"] == "inference" and entry["outcome"] == "success"
    assert entry["correlation_id"] == report["correlation_id"]
    assert entry["details"]["models"] == report["model"]["members"]
    assert set(entry["details"]["outputs_sha256"]) == {"seg", "uncertainty_map", "sr"}
    text = log.read_text()
    for uid in (
        report["series"][0]["series_instance_uid"],
        report["series"][0]["study_instance_uid"],
    ):
        assert uid not in text
    assert verify_chain(log).ok
