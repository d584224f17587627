"""The builder: a seconds-long smoke run of the real training/export/evaluation path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from models.builder.build import build, reevaluate
from models.builder.config import SMOKE
from models.builder.export import (
    ExportParityError,
    export_onnx,
    export_with_parity,
    parity_max_difference,
)
from models.builder.model_card import CARD_NAME, FIGURES
from models.builder.train import build_network, seed_everything
from models.loader import ModelIntegrityError, load_ensemble
from models.manifest import read_manifest
from models.uncertainty import STUDY_SCORES


@pytest.fixture(scope="module")
def smoke_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("smoke")
    first = root / "first"
    second = root / "second"
    build(SMOKE, root / "data", first, root / "work-first")
    build(SMOKE, root / "data", second, root / "work-second")
    return first, second


@pytest.mark.requirement("SRS-019", "SRS-082")
def test_smoke_build_is_deterministic(smoke_builds: tuple[Path, Path]) -> None:
    first, second = (read_manifest(folder) for folder in smoke_builds)
    assert [m.sha256 for m in first.members] == [m.sha256 for m in second.members]
    assert first.ensemble_metrics == second.ensemble_metrics
    assert first.calibration == second.calibration
    assert first.robustness == second.robustness
    assert first.failure_detection == second.failure_detection
    assert first.voxel_calibration == second.voxel_calibration


@pytest.mark.requirement("SRS-081", "SRS-017", "SRS-007")
def test_smoke_build_measures_shifts_failure_detection_and_calibration(
    smoke_builds: tuple[Path, Path],
) -> None:
    manifest = read_manifest(smoke_builds[0])
    rows = {(r.modality, r.family, r.severity) for r in manifest.robustness}
    for modality in ("CT", "MR"):
        assert (modality, "clean", "none") in rows
        assert {(modality, family, "severe") for family in SMOKE.shift_families or ()} <= rows
    detection = manifest.failure_detection
    assert detection is not None and detection.score == manifest.calibration.score
    assert detection.threshold == manifest.calibration.ood_threshold
    assert {c.score for c in detection.candidates_validation} == set(STUDY_SCORES)
    assert detection.studies == sum(r.cases for r in manifest.robustness)
    calibration = manifest.voxel_calibration
    assert calibration is not None and calibration.temperature == manifest.calibration.temperature
    assert sum(b.voxels for b in calibration.reliability_after) > 0
    assert manifest.provenance.kernel_pins["ATEN_CPU_CAPABILITY"] == "avx2"
    for member in manifest.members:
        assert member.cpu_ms_per_window is not None and member.cpu_ms_per_window > 0


@pytest.mark.requirement("SRS-019", "SRS-085")
def test_reevaluation_measures_the_same_members_again(
    smoke_builds: tuple[Path, Path], tmp_path: Path
) -> None:
    data = smoke_builds[0].parent / "data"
    built = read_manifest(smoke_builds[0])
    folder = tmp_path / "ensemble"
    shutil.copytree(smoke_builds[0], folder)
    again = reevaluate(SMOKE, data, folder)
    assert [m.sha256 for m in again.members] == [m.sha256 for m in built.members]
    assert again.ensemble_metrics == built.ensemble_metrics
    assert again.calibration == built.calibration
    assert again.calibration.mr_faint_component_ratio == SMOKE.mr_faint_component_ratio
    assert again.provenance.code_commit == built.provenance.code_commit
    assert again.provenance.evaluation_commit
    assert [m.cpu_ms_per_window for m in again.members] == [
        m.cpu_ms_per_window for m in built.members
    ]
    # A larger validation split refits the threshold; the provenance names the one used.
    wider_data = tmp_path / "data"
    shutil.copytree(data, wider_data)
    wider = reevaluate(SMOKE.model_copy(update={"val_seeds": (1000, 1002)}), wider_data, folder)
    assert wider.provenance.val_split_sha256 != built.provenance.val_split_sha256
    assert len(wider.calibration.validation_scores) == 2 * len(built.calibration.validation_scores)
    assert [m.sha256 for m in wider.members] == [m.sha256 for m in built.members]
    retrained = SMOKE.model_copy(
        update={"members": (SMOKE.members[0].model_copy(update={"iterations": 4}),)}
    )
    with pytest.raises(ValueError, match="must be retrained"):
        reevaluate(retrained, data, folder)
    onnx_file = folder / built.members[0].file
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError):
        reevaluate(SMOKE, data, folder)


@pytest.mark.requirement("SRS-081")
def test_model_card_is_generated_from_the_manifest(smoke_builds: tuple[Path, Path]) -> None:
    folder = smoke_builds[0]
    manifest = read_manifest(folder)
    card = (folder / CARD_NAME).read_text()
    for heading in (
        "## Intended use",
        "## Robustness",
        "## Failure detection",
        "## Voxel calibration",
        "## Limits",
        "## Reproducibility",
    ):
        assert heading in card
    assert f"{manifest.ensemble_metrics['CT'].dice:.4f}" in card
    assert f"threshold {manifest.calibration.ood_threshold:.4f}" in card
    for figure in FIGURES.values():
        assert f"]({figure})" in card
        assert (folder / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.requirement("SRS-019", "SRS-016", "SRS-017")
def test_smoke_build_writes_a_loadable_verified_ensemble(smoke_builds: tuple[Path, Path]) -> None:
    loaded = load_ensemble(smoke_builds[0])
    manifest = loaded.manifest
    assert {m.architecture for m in manifest.members} == {"UNet", "SegResNet"}
    assert manifest.provenance.train_split_sha256 != manifest.data.test_split_sha256
    for member in manifest.members:
        model = onnx.load(str(smoke_builds[0] / member.file))
        assert model.opset_import[0].version >= 17
        dims = model.graph.input[0].type.tensor_type.shape.dim
        # batch and the three spatial axes are symbolic (dynamic); the channel is 1.
        assert [d.dim_param != "" for d in dims] == [True, False, True, True, True]


@pytest.mark.requirement("SRS-019")
def test_parity_holds_and_a_wrong_model_is_caught(tmp_path: Path) -> None:
    recipe = SMOKE.members[0]
    seed_everything(5, 2)
    network = build_network(recipe).eval()
    other = build_network(recipe).eval()  # different random weights
    patch = recipe.patch_size
    real = np.random.default_rng(0).normal(size=patch).astype(np.float32)
    difference = export_with_parity(network, patch, 17, tmp_path / "ok.onnx", real, 1e-4)
    assert difference <= 1e-4 and (tmp_path / "ok.onnx").is_file()
    onnx_bytes = export_onnx(network, patch, 17)
    inputs = [np.random.default_rng(1).normal(size=(1, 1, *patch)).astype(np.float32)]
    assert parity_max_difference(other, onnx_bytes, inputs) > 1e-3


@pytest.mark.requirement("SRS-019")
def test_export_refused_when_parity_fails(tmp_path: Path) -> None:
    recipe = SMOKE.members[0]
    network = build_network(recipe).eval()
    real = np.zeros(recipe.patch_size, dtype=np.float32)
    with pytest.raises(ExportParityError, match="export refused"):
        export_with_parity(network, recipe.patch_size, 17, tmp_path / "bad.onnx", real, -1.0)
    assert not (tmp_path / "bad.onnx").exists()
