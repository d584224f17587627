"""A site fine-tunes the smoke ensemble on its own studies; MLflow records every run (issue 17).

One smoke build gives the checkpoints and the reference ensemble; a tiny nnU-Net dataset
and a tiny DICOM + SEG dataset (written by the generator) each fine-tune its members for
the smoke recipe's few iterations. The runs are read back with MLflow's own client from
the local SQLite store: parameters, per-iteration losses, metrics, artefacts and the
registered model versions; the manifests name the runs and the data hashes.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from compliance.audit.events import audited_model_version
from map_app.pipeline import Pipeline
from models.builder.__main__ import main
from models.builder.config import SMOKE, BuildRecipe, SiteDataRecipe
from models.builder.datasets import load_site_dataset
from models.builder.site import FineTuneSourceError, plan_site_build
from models.builder.tracking import TrackedBuild, offline, public_uri, tracked_build, ui_command
from models.loader import load_ensemble
from models.manifest import read_manifest
from synthetic.splits import read_split
from tests.builder_site_support import write_dicom_dataset, write_nnunet


@dataclass(frozen=True)
class SiteRuns:
    root: Path
    uri: str
    base: TrackedBuild
    nnunet: TrackedBuild
    dicom: TrackedBuild


def _site(path: Path, root: Path) -> SiteDataRecipe:
    return SiteDataRecipe(
        path=path,
        synthetic_share=0.5,
        start_from="checkpoints",
        checkpoint_dir=root / "work-base",
        reference_dir=root / "base",
        test_lock_file=root / "site-test-lock.json",
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> SiteRuns:
    root = tmp_path_factory.mktemp("site-build")
    uri = f"sqlite:///{root}/mlflow/mlflow.db"
    base = tracked_build(SMOKE, root / "data", root / "base", root / "work-base", uri)
    nn = write_nnunet(root / "Dataset001_Vessels", [1, 2], [3])
    dicom = write_dicom_dataset(root / "site-dicom", [4, 5], [6])
    recipe = SMOKE.model_copy(update={"version": "0.1.0", "site": _site(nn, root)})
    tuned = tracked_build(recipe, root / "data", root / "nnunet", root / "work-nnunet", uri)
    # The DICOM site goes through the command line, as a site runs it.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                "--smoke",
                "--version=0.1.0",
                f"--site-data={dicom}",
                f"--fine-tune-from={root / 'work-base'}",
                f"--reference-dir={root / 'base'}",
                f"--data-dir={root / 'data'}",
                f"--out-dir={root / 'dicom'}",
                f"--work-dir={root / 'work-dicom'}",
                f"--tracking-uri={uri}",
            ]
        )
    assert code == 0
    manifest = read_manifest(root / "dicom")
    output = printed.getvalue()
    version = re.search(r"registered model minivess-smoke version (\d+)", output)
    assert version is not None, output
    assert f"MLflow run {manifest.provenance.mlflow_runs[0].run_id}" in output
    assert f"look at it with: mlflow ui --backend-store-uri {uri}" in output
    assert "site test CT: Dice" in output
    dicom_build = TrackedBuild(manifest, manifest.provenance.mlflow_runs[0], version.group(1))
    builds = [tuned, dicom_build]
    return SiteRuns(root, uri, base, builds[0], builds[1])


def _client(uri: str):  # type: ignore[no-untyped-def]
    offline()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.mark.requirement("SRS-019", "SRS-018", "SRS-091")
def test_site_builds_fine_tune_and_name_their_run_and_data(runs: SiteRuns) -> None:
    for tracked, path, fmt, lock in (
        (runs.nnunet, runs.root / "Dataset001_Vessels", "nnunet", "site-test-lock.json"),
        (runs.dicom, runs.root / "site-dicom", "dicom-seg", "work-dicom/site-test-lock.json"),
    ):
        manifest = tracked.manifest
        provenance = manifest.provenance
        assert provenance.mlflow_runs == (tracked.run,)
        assert tracked.run.run_id and tracked.run.registered_model == SMOKE.ensemble_name
        site = load_site_dataset(path, max_spacing_mm=3.0, lock_file=runs.root / lock)
        roles = {d.role: d for d in provenance.datasets}
        assert roles["site-train"].content_sha256 == site.train_sha256
        assert roles["site-train"].format == fmt and roles["site-train"].cases == 2
        assert roles["site-test"].content_sha256 == site.test_sha256
        assert manifest.data.site_test_sha256 == site.test_sha256
        assert manifest.data.site_test_cases == 1
        assert roles["train"].content_sha256 == provenance.train_split_sha256
        assert roles["train"].cases == 4  # 2 site + 2 synthetic: share 0.5
        for role in ("synthetic-train", "synthetic-val", "synthetic-test"):
            assert len(roles[role].content_sha256) == 64
        assert manifest.site_test_metrics["CT"].cases == 1
        assert set(manifest.validation_metrics) == {"CT", "MR"}
        # fine-tuned from the base build's checkpoints, trained for the smoke iterations
        for member in SMOKE.members:
            checkpoint = runs.root / "work-base" / f"{member.name}.pt"
            assert provenance.fine_tuned_from[member.name] == _sha256(checkpoint)
        assert [m.training_iterations for m in manifest.members] == [3, 3]
        folder = runs.root / ("nnunet" if fmt == "nnunet" else "dicom")
        card = (folder / "model_card.md").read_text()
        assert "### The site's own studies" in card and site.train_sha256 in card
        assert f"MLflow run `{tracked.run.run_id}`" in card
        assert "| site test | cases | Dice |" in card
        loaded = load_ensemble(folder)
        # Deployed, its inference entries in the audit log name the run.
        summary = Pipeline(folder).model_summary()
        assert summary.mlflow_runs == [tracked.run.run_id]
        audited = audited_model_version(summary.model_dump())
        assert audited == f"0.1.0 (MLflow run {tracked.run.run_id})"
        base_hashes = {m.sha256 for m in runs.base.manifest.members}
        assert not base_hashes & {m.sha256 for m in loaded.manifest.members}


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_mlflow_records_params_losses_metrics_artefacts_and_versions(runs: SiteRuns) -> None:
    client = _client(runs.uri)
    run = client.get_run(runs.nnunet.run.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    site_train = next(d for d in runs.nnunet.manifest.provenance.datasets if d.role == "site-train")
    assert params["data.site-train.sha256"] == site_train.content_sha256
    assert params["site.synthetic_share"] == "0.5" and params["site.format_read"] == "nnunet"
    assert params["site.start_from"] == "checkpoints"
    assert params["member.unet-smoke.iterations"] == "3"
    assert len(params["member.unet-smoke.fine_tuned_from_sha256"]) == 64
    assert params["code_commit"] == runs.nnunet.manifest.provenance.code_commit
    for member in SMOKE.members:
        history = client.get_metric_history(run.info.run_id, f"{member.name}.train_loss")
        assert [m.step for m in history] == [1, 2, 3] and all(m.value > 0 for m in history)
    metrics = run.data.metrics
    manifest = runs.nnunet.manifest
    assert metrics["site_test.CT.dice"] == manifest.site_test_metrics["CT"].dice
    assert metrics["test.MR.dice"] == manifest.ensemble_metrics["MR"].dice
    assert "val.CT.dice" in metrics and "flag.threshold" in metrics
    assert any(key.startswith("shift.CT.air.severe") for key in metrics)
    names = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "ensemble")}
    assert {"manifest.json", "model_card.md", "unet-smoke.onnx", "segresnet-smoke.onnx"} <= names
    inputs = {d.dataset.name.split(":")[0] for d in run.inputs.dataset_inputs}
    assert {"site-train", "site-test", "train", "synthetic-val"} <= inputs
    versions = client.search_model_versions(f"name='{SMOKE.ensemble_name}'")
    by_run = {v.run_id: v for v in versions}
    assert len(versions) == 3
    for tracked in (runs.base, runs.nnunet, runs.dicom):
        version = by_run[tracked.run.run_id]
        assert str(version.version) == tracked.model_version
        assert version.tags["ensemble_version"] == tracked.manifest.version
        assert version.source.endswith("/ensemble")


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_fine_tuning_needs_the_checkpoint_of_the_reference_member(
    runs: SiteRuns, tmp_path: Path
) -> None:
    synthetic = read_split(runs.root / "data" / "train")
    site = _site(runs.root / "Dataset001_Vessels", runs.root)
    recipe = SMOKE.model_copy(update={"site": site})
    assert plan_site_build(recipe, synthetic, tmp_path).fine_tuned_from  # the base: accepted
    # the fine-tuned checkpoints are not the reference members any more
    other = site.model_copy(update={"checkpoint_dir": runs.root / "work-nnunet"})
    with pytest.raises(FineTuneSourceError, match="is not member 'unet-smoke' of"):
        plan_site_build(recipe.model_copy(update={"site": other}), synthetic, tmp_path)
    empty = site.model_copy(update={"checkpoint_dir": tmp_path / "none"})
    with pytest.raises(FineTuneSourceError, match="ONNX members cannot be trained"):
        plan_site_build(recipe.model_copy(update={"site": empty}), synthetic, tmp_path)
    shutil.copytree(runs.root / "work-base", tmp_path / "wrong")
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "wrong" / "unet-smoke.pt")
    wrong = site.model_copy(update={"checkpoint_dir": tmp_path / "wrong"})
    with pytest.raises(FineTuneSourceError, match="does not fit member 'unet-smoke'"):
        plan_site_build(recipe.model_copy(update={"site": wrong}), synthetic, tmp_path)


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_site_share_and_recipe_fields_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="less than 1"):
        SiteDataRecipe(path=tmp_path, synthetic_share=1.0)
    recipe = BuildRecipe.model_validate_json(
        SMOKE.model_copy(update={"site": SiteDataRecipe(path=tmp_path)}).model_dump_json()
    )
    assert recipe.site is not None and recipe.site.start_from == "scratch"
    assert SMOKE.site is None


def test_tracking_uri_never_leaks_credentials_and_says_where_to_look() -> None:
    assert public_uri("https://user:secret@mlflow.site:5000/") == "https://mlflow.site:5000/"
    assert ui_command("sqlite:///var/mlflow/mlflow.db") == (
        "mlflow ui --backend-store-uri sqlite:///var/mlflow/mlflow.db"
    )
    assert os.environ.get("MLFLOW_DISABLE_TELEMETRY") in (None, "true")


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_cli_refuses_a_broken_site_dataset_before_anything_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_nnunet(tmp_path / "broken", [1, 2], [])
    (root / "labelsTr" / "site_001.nii.gz").unlink()
    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    code = main(
        [
            "--smoke",
            f"--site-data={root}",
            f"--data-dir={tmp_path / 'data'}",
            f"--out-dir={tmp_path / 'out'}",
            f"--work-dir={tmp_path / 'work'}",
            f"--tracking-uri={uri}",
        ]
    )
    assert code == 65
    err = capsys.readouterr().err
    assert "site dataset refused" in err
    assert "train/site_001: [missing-label] imagesTr/site_001_0000.nii.gz has no annotation" in err
    assert not (tmp_path / "data").exists()  # judged before a synthetic split was generated
    client = _client(uri)
    experiment = client.get_experiment_by_name(SMOKE.ensemble_name)
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
