"""MLflow experiment tracking and model registry for builds, offline by default.

The default store is a local SQLite database, ``sqlite:///var/mlflow/mlflow.db``, with
artefacts in ``var/mlflow/artifacts``: MLflow 3's database store keeps both the tracking
data and the model registry, and needs no server. A tracking server is used when
``--tracking-uri`` (or MLflow's own ``MLFLOW_TRACKING_URI``) names one. Telemetry is
switched off before mlflow is imported (``MLFLOW_DISABLE_TELEMETRY``, ``DO_NOT_TRACK``),
so a local build never calls out; artefacts are logged as plain files (no
``mlflow.onnx.log_model``, whose environment inference runs pip).

One build = one run in the experiment named after the ensemble: parameters (recipe,
mix, data hashes), each member's loss at every iteration (step = iteration),
validation, test, site test and shift-suite metrics, the ensemble folder (ONNX members,
manifest, model card and figures) as artefacts, and one registered model version per
release (tags: ensemble version, manifest SHA-256). Uses ``MlflowClient`` only (no
global active run), so a build in a test or a notebook leaves no state behind.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from models.builder.config import BuildRecipe
from models.digest import sha256_file
from models.manifest import MANIFEST_NAME, DatasetVersion, EnsembleManifest, TrackingRecord

DEFAULT_TRACKING_URI = "sqlite:///var/mlflow/mlflow.db"
LOSS_BATCH = 100  # iterations per write: one SQLite transaction per step would slow training
_PARAM_LIMIT = 6000  # MLflow's limit on a parameter value


def offline() -> None:
    """Keep mlflow from calling out; call before importing it."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


def resolve_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def public_uri(uri: str) -> str:
    """The URI without user:password, fit for manifests and logs."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def _local_artifact_root(uri: str) -> str | None:
    """Artefacts beside a local SQLite database (a server chooses its own)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.parent / "artifacts").resolve().as_uri()


def ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {public_uri(uri)}"
    return f"mlflow ui --backend-store-uri {uri}"


class Tracker:
    """One build's MLflow run."""

    def __init__(
        self, tracking_uri: str | None, experiment: str, run_name: str, tags: Mapping[str, str]
    ) -> None:
        offline()
        from mlflow.tracking import MlflowClient  # heavy import, only when tracking

        self.uri = resolve_uri(tracking_uri)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id
            if found is not None
            else self.client.create_experiment(
                experiment, artifact_location=_local_artifact_root(self.uri)
            )
        )
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        self.run_id: str = run.info.run_id
        self.artifact_uri: str = run.info.artifact_uri or ""

    def record(self, registered_model: str | None = None) -> TrackingRecord:
        return TrackingRecord(
            tracking_uri=public_uri(self.uri),
            experiment_id=self.experiment_id,
            run_id=self.run_id,
            registered_model=registered_model,
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, str(value)[:_PARAM_LIMIT]) for key, value in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float | None], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = _now_ms()
        items = [
            Metric(_metric_key(key), float(value), now, step)
            for key, value in sorted(metrics.items())
            if value is not None
        ]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def loss_logger(self, member: str) -> tuple[Callable[[int, float], None], Callable[[], None]]:
        """(on_loss for ``train_member``, flush): every iteration's loss, written in batches."""
        from mlflow.entities import Metric

        pending: list[Metric] = []
        key = _metric_key(f"{member}.train_loss")

        def flush() -> None:
            if pending:
                self.client.log_batch(self.run_id, metrics=list(pending))
                pending.clear()

        def on_loss(iteration: int, value: float) -> None:
            pending.append(Metric(key, value, _now_ms(), iteration))
            if len(pending) >= LOSS_BATCH:
                flush()

        return on_loss, flush

    def log_datasets(self, datasets: Sequence[DatasetVersion]) -> None:
        """Each dataset as an MLflow dataset input (the run page's "Datasets used")."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                Dataset(
                    name=f"{version.role}:{version.source}"[:500],
                    # MLflow's digest column holds 36 characters; the full hash is in the
                    # profile and in the run's data.* parameters.
                    digest=version.content_sha256[:32],
                    source_type="local",
                    source=json.dumps({"source": version.source, "format": version.format}),
                    profile=json.dumps(
                        {"content_sha256": version.content_sha256, "cases": version.cases}
                    ),
                ),
                tags=[InputTag("mlflow.data.context", version.role)],
            )
            for version in datasets
        ]
        self.client.log_inputs(self.run_id, datasets=inputs)

    def log_ensemble(self, out_dir: Path, manifest: EnsembleManifest) -> None:
        """The release folder: ONNX members, manifest, model card and its figures."""
        self.client.log_artifacts(self.run_id, str(out_dir), artifact_path="ensemble")
        self.log_metrics(manifest_metrics(manifest))

    def register(self, name: str, out_dir: Path, manifest: EnsembleManifest) -> str:
        """A new version of registered model ``name`` for this release; returns its number."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                name, description="MinIVess vessel segmentation ensemble (ONNX members)"
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = self.client.create_model_version(
            name,
            source=f"{self.artifact_uri}/ensemble",
            run_id=self.run_id,
            tags={
                "ensemble_version": manifest.version,
                "manifest_sha256": sha256_file(out_dir / MANIFEST_NAME),
            },
            description=f"{manifest.name} {manifest.version}",
        )
        return str(version.version)

    def finish(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def _metric_key(key: str) -> str:
    # MLflow keys: alphanumerics, _ - . / and space.
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)


def manifest_metrics(manifest: EnsembleManifest) -> dict[str, float | None]:
    """The manifest's measurements as flat MLflow metrics."""
    metrics: dict[str, float | None] = {}
    blocks = {
        "test": manifest.ensemble_metrics,
        "val": manifest.validation_metrics,
        "site_test": manifest.site_test_metrics,
    }
    for prefix, block in blocks.items():
        for modality, values in block.items():
            for name in ("dice", "cldice", "hd95_mm"):
                metrics[f"{prefix}.{modality}.{name}"] = getattr(values, name)
    for member in manifest.members:
        for modality, values in member.metrics.items():
            metrics[f"{member.name}.test.{modality}.dice"] = values.dice
    for row in manifest.robustness:
        key = f"shift.{row.modality}.{row.family}.{row.severity}"
        metrics[f"{key}.dice"] = row.dice
        metrics[f"{key}.flagged"] = row.flagged
    detection = manifest.failure_detection
    if detection is not None:
        metrics.update(
            {
                "flag.threshold": detection.threshold,
                "flag.test_recall": detection.recall,
                "flag.test_false_flag_rate_clean": detection.false_flag_rate_clean,
                "flag.test_auroc": detection.auroc,
                "flag.test_aurc": detection.aurc,
            }
        )
        for candidate in detection.candidates_validation:
            metrics[f"val.score.{candidate.score}.aurc"] = candidate.aurc
    calibration = manifest.voxel_calibration
    if calibration is not None:
        metrics.update(
            {
                "calibration.temperature": calibration.temperature,
                "calibration.val_ece_after": calibration.validation_ece_after,
                "calibration.test_ece_before": calibration.test_ece_before,
                "calibration.test_ece_after": calibration.test_ece_after,
            }
        )
    return metrics


@dataclass(frozen=True)
class TrackedBuild:
    manifest: EnsembleManifest
    run: TrackingRecord
    model_version: str


def tracked_build(
    recipe: BuildRecipe,
    data_dir: Path,
    out_dir: Path,
    work_dir: Path,
    tracking_uri: str | None = None,
    reuse_checkpoints: bool = False,
) -> TrackedBuild:
    """``models.builder.build.build`` inside an MLflow run, registered as a model version."""
    from models.builder.build import build

    tags = {"ensemble": recipe.ensemble_name, "ensemble_version": recipe.version}
    if recipe.site is not None:
        tags["site_dataset"] = recipe.site.path.name
    tracker = Tracker(
        tracking_uri, recipe.ensemble_name, f"{recipe.ensemble_name}-{recipe.version}", tags
    )
    try:
        manifest = build(recipe, data_dir, out_dir, work_dir, reuse_checkpoints, tracker)
        tracker.log_ensemble(out_dir, manifest)
        version = tracker.register(recipe.ensemble_name, out_dir, manifest)
    except BaseException:
        tracker.finish(failed=True)
        raise
    tracker.finish()
    return TrackedBuild(manifest, tracker.record(recipe.ensemble_name), version)
