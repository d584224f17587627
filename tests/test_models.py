"""The shipped ensemble: manifest schema, hash verification, provider choice, test lockout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from map_app.config import AppConfig
from models.builder.model_card import CARD_NAME, FALSE_FLAG_GOAL, render_card
from models.inference import ensemble_probabilities
from models.loader import ModelIntegrityError, choose_providers, cpu_has_bf16, load_ensemble
from models.manifest import MANIFEST_NAME, EnsembleManifest, read_manifest
from models.metrics import dice
from operators.segmentation.fusion import segmentation_result
from synthetic.splits import TestSetLockoutError, read_split, write_split

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "ensemble"


@pytest.fixture
def ensemble_copy(tmp_path: Path) -> Path:
    target = tmp_path / "ensemble"
    shutil.copytree(SHIPPED, target)
    return target


def _manifest_json() -> dict:
    return json.loads((SHIPPED / MANIFEST_NAME).read_text())


@pytest.mark.requirement("SRS-017")
def test_shipped_manifest_is_valid_and_meets_the_quality_bar() -> None:
    manifest = read_manifest(SHIPPED)
    architectures = {member.architecture for member in manifest.members}
    assert len(architectures) >= 2
    for modality in ("CT", "MR"):  # the members a study runs differ by network and seed
        members = manifest.members_for(modality)
        assert len(members) >= 3
        assert len({member.seed for member in members}) == len(members)
        assert len({member.architecture for member in members}) >= 2
    # Issue 11's goal: Dice >= 0.85 for both on the locked test split (50 studies each since
    # 3.1.1; MR under most shifts still falls short: the model card's "below goal" rows).
    for modality in ("CT", "MR"):
        metrics = manifest.ensemble_metrics[modality]
        assert metrics.cases >= 50 and metrics.dice >= 0.85, modality
    assert all(member.onnx_opset >= 17 for member in manifest.members)
    assert all(member.normalisation.method == "modality_window" for member in manifest.members)


@pytest.mark.requirement("SRS-081", "SRS-007")
def test_shipped_flag_catches_failures_and_probabilities_are_calibrated() -> None:
    manifest = read_manifest(SHIPPED)
    detection = manifest.failure_detection
    assert detection is not None and detection.score == manifest.calibration.score
    assert {row.severity for row in detection.by_severity} == {"none", "mild", "moderate", "severe"}
    for row in detection.by_severity:  # recall >= 0.95 of failures at every severity
        assert row.recall is None or row.recall >= 0.95, row
    clean = next(row for row in detection.by_severity if row.severity == "none")
    assert clean.false_flag_rate <= 0.05  # successful clean studies flagged
    # Per modality, CT meets the goal; MR does not (8.9 % in 3.1.1, 11-16 % on unseen
    # studies, README): its ceiling guards against regression.
    ceiling = {"CT": 0.05, "MR": 0.10}
    by_modality = [row for row in detection.by_modality if row.severity == "none"]
    assert {row.modality for row in by_modality} == set(ceiling)
    for row in by_modality:
        assert row.modality is not None and row.false_flag_rate <= ceiling[row.modality], row
    calibration = manifest.voxel_calibration
    assert calibration is not None and calibration.test_ece_after <= 0.02
    assert calibration.temperature == manifest.calibration.temperature
    families = {(r.modality, r.family) for r in manifest.robustness}
    assert len(families) >= 2 * 9 and ("CT", "streaks") in families and ("MR", "air") in families


@pytest.mark.requirement("SRS-081")
def test_shipped_model_card_is_its_manifest_and_names_the_over_flagged_modality() -> None:
    manifest = read_manifest(SHIPPED)
    card = (SHIPPED / CARD_NAME).read_text()
    assert card == render_card(manifest)  # no hand edits: every figure is the manifest's
    detection = manifest.failure_detection
    assert detection is not None
    for row in detection.by_modality:
        if row.severity == "none":
            line = f"- {row.modality}: {row.false_flag_rate:.1%} of the successful clean test"
            assert (line in card) == (row.false_flag_rate > FALSE_FLAG_GOAL), row


@pytest.mark.requirement("SRS-081")
def test_readme_quotes_the_shipped_manifest() -> None:
    """One number, one source: the README's headline figures are the manifest's."""
    manifest = read_manifest(SHIPPED)
    readme = (SHIPPED.parents[1] / "README.md").read_text()
    detection = manifest.failure_detection
    assert detection is not None and manifest.voxel_calibration is not None
    for figure in (
        f"CT {manifest.ensemble_metrics['CT'].dice:.4f}",
        f"MR {manifest.ensemble_metrics['MR'].dice:.4f}",
        f"threshold {manifest.calibration.ood_threshold:.4f}",
        f"AUROC {detection.auroc:.4f}",
        f"AURC {detection.aurc:.4f}",
        f"ECE {manifest.voxel_calibration.test_ece_after:.4f}",
    ):
        assert figure in readme, figure


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("members", 0, "sha256"), "ABC", "sha256"),
        (("members", 0, "file"), "../evil.onnx", "plain"),
        (("members", 0, "onnx_opset"), 13, "onnx_opset"),
        (("version",), "one", "version"),
        (("unexpected_field",), 1, "unexpected_field"),
    ],
)
@pytest.mark.requirement("SRS-017")
def test_manifest_schema_rejects_bad_entries(path: tuple, value: object, message: str) -> None:
    document = _manifest_json()
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError, match=message):
        EnsembleManifest.model_validate(document)


@pytest.mark.requirement("SRS-017")
def test_manifest_schema_rejects_duplicate_members() -> None:
    document = _manifest_json()
    document["members"].append(document["members"][0])
    with pytest.raises(ValidationError, match="unique"):
        EnsembleManifest.model_validate(document)


@pytest.mark.requirement("SRS-016")
def test_untouched_ensemble_loads(ensemble_copy: Path) -> None:
    loaded = load_ensemble(ensemble_copy)
    assert [m.member.name for m in loaded.members] == [m.name for m in loaded.manifest.members]
    assert loaded.providers[-1] == "CPUExecutionProvider"


@pytest.mark.requirement("SRS-016")
def test_altered_member_is_refused_naming_the_file(ensemble_copy: Path) -> None:
    manifest = read_manifest(ensemble_copy)
    victim = ensemble_copy / manifest.members[-1].file
    content = bytearray(victim.read_bytes())
    content[len(content) // 2] ^= 0x01  # one flipped bit, same size
    victim.write_bytes(bytes(content))
    with pytest.raises(ModelIntegrityError, match="altered: SHA-256") as raised:
        load_ensemble(ensemble_copy)
    assert raised.value.file == victim
    assert victim.name in str(raised.value)


@pytest.mark.requirement("SRS-016")
def test_truncated_member_is_refused(ensemble_copy: Path) -> None:
    victim = ensemble_copy / read_manifest(ensemble_copy).members[0].file
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(ModelIntegrityError, match="truncated"):
        load_ensemble(ensemble_copy)


@pytest.mark.requirement("SRS-016")
def test_missing_member_is_refused(ensemble_copy: Path) -> None:
    victim = ensemble_copy / read_manifest(ensemble_copy).members[1].file
    victim.unlink()
    with pytest.raises(ModelIntegrityError, match="missing") as raised:
        load_ensemble(ensemble_copy)
    assert raised.value.file == victim


@pytest.mark.requirement("SRS-021")
def test_provider_preference_and_override() -> None:
    gpu_site = ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(None, gpu_site) == gpu_site[1:2] + gpu_site[0:1] + [
        "CPUExecutionProvider"
    ]
    assert choose_providers(None, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    cpu_site = ["CPUExecutionProvider", "OpenVINOExecutionProvider"]
    assert choose_providers(None, cpu_site) == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["CUDAExecutionProvider"], gpu_site) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    with pytest.raises(ValueError, match="TensorrtExecutionProvider"):
        choose_providers(["TensorrtExecutionProvider"], ["CPUExecutionProvider"])


@pytest.mark.requirement("SRS-018")
def test_test_split_lockout(tmp_path: Path) -> None:
    index = write_split("test", tmp_path / "test", range(2000, 2001))
    assert len(read_split(tmp_path / "test", index.content_sha256)) == 2
    with pytest.raises(TestSetLockoutError, match="locked"):
        read_split(tmp_path / "test")
    # Alter one voxel of one mask: the recomputed digest no longer matches the lock.
    import nibabel as nib

    mask_file = tmp_path / "test" / index.cases[0].mask_file
    image = nib.load(str(mask_file))
    data = np.asarray(image.dataobj).copy()
    data.flat[0] = 1 - data.flat[0]
    nib.save(nib.Nifti1Image(data, image.affine, image.header), str(mask_file))
    with pytest.raises(TestSetLockoutError, match="altered"):
        read_split(tmp_path / "test", index.content_sha256)


@pytest.mark.requirement("SRS-034")
def test_every_test_set_read_is_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv("MINIVESS_AUDIT_LOG", str(log))
    index = write_split("test", tmp_path / "test", range(2000, 2001))
    read_split(tmp_path / "test", index.content_sha256, purpose="unit test")
    with pytest.raises(TestSetLockoutError):
        read_split(tmp_path / "test", "0" * 64)
    with pytest.raises(TestSetLockoutError):
        read_split(tmp_path / "test")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event_type"] for e in entries] == ["testset.access"] * 3
    assert [e["details"]["hash_check"] for e in entries] == ["match", "mismatch", "missing"]
    assert [e["outcome"] for e in entries] == ["success", "refused", "refused"]
    assert entries[0]["details"]["purpose"] == "unit test"


@pytest.mark.slow
@pytest.mark.requirement("SRS-020", "SRS-017", "SRS-025")
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_shipped_metrics_reproduce_on_the_regenerated_locked_test_split(
    tmp_path_factory: pytest.TempPathFactory, bf16: bool
) -> None:
    """The generator is deterministic across machines and the manifest tells the truth.

    bf16 (the appliance's default on CPUs that have it) must stay within 0.005 Dice of
    the fp32 figures in the manifest; fp32 within 1e-3 (run-to-run float noise).
    """
    if bf16 and not (
        cpu_has_bf16() and "OpenVINOExecutionProvider" in ort.get_available_providers()
    ):
        pytest.skip("no bf16 here (CPU without AVX512-BF16/AMX or no OpenVINO): it would run fp32")
    manifest = read_manifest(SHIPPED)
    folder = tmp_path_factory.getbasetemp() / "locked-test-split"
    if not (folder / "split.json").is_file():
        write_split("test", folder)
    cases = read_split(folder, manifest.data.test_split_sha256, purpose="test: metrics reproduce")
    ensemble = load_ensemble(SHIPPED, bf16=bf16)
    per_modality: dict[str, list[float]] = {}
    for case in cases:
        stack = ensemble_probabilities(
            ensemble,
            case.image,
            case.geometry.spacing,
            AppConfig().sliding_window(),
            modality=case.modality.value,
        )
        # As the appliance answers: fusion, then the MR mask rules.
        predicted = segmentation_result(
            ensemble, stack, None, case.geometry.spacing, case.image, case.modality.value
        ).mask
        per_modality.setdefault(case.modality.value, []).append(dice(predicted, case.mask))
    for modality, scores in per_modality.items():
        tolerance = 0.005 if bf16 else 1e-3
        assert np.mean(scores) == pytest.approx(
            manifest.ensemble_metrics[modality].dice, abs=tolerance
        )


def test_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_has_bf16(with_bf16) and not cpu_has_bf16(without)
    assert not cpu_has_bf16(tmp_path / "absent")
