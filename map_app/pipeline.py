"""The pipeline as a long-lived object: models loaded once, one run per study.

``python -m map_app`` creates one ``Pipeline`` and runs it once; the appliance service
keeps one and calls ``run`` for every study. Each run builds the operator graph anew
(cheap) around the already verified and loaded ensemble, and always leaves a
``report.json`` in its output folder, also when it fails.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from compliance.audit import AuditLog
from compliance.audit.events import record_inference
from map_app.config import AppConfig
from models.loader import LoadedEnsemble, ModelIntegrityError, load_ensemble
from models.manifest import MANIFEST_NAME
from operators.dicom_input.selection import SelectionRules
from operators.errors import InputNotFoundError, ModelLoadError, OutputError, PipelineError
from operators.nifti.volume import is_nifti
from operators.run_report import ModelSummary, RunRecorder, RunReport, SkippedInput

REPORT_NAME = "report.json"


def resolve_model_dir(path: Path) -> Path:
    """The ensemble folder: ``path`` itself, or its one sub-folder holding a manifest.

    The MAP convention sets HOLOSCAN_MODEL_PATH to the models root
    (``/opt/holoscan/models``) with one folder per named model below it; a developer
    passes the ensemble folder itself. Both work.
    """
    if (path / MANIFEST_NAME).is_file() or not path.is_dir():
        return path
    candidates = sorted(p for p in path.iterdir() if (p / MANIFEST_NAME).is_file())
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise ModelLoadError(f"{path} holds several models ({names}); pass one of them")
    return path


def load_verified_ensemble(
    model_dir: Path, config: AppConfig, open_sessions: bool = False
) -> LoadedEnsemble:
    """The ensemble, every file checked against the manifest, or ``ModelLoadError``.

    ``open_sessions``: open every member's session now; otherwise each opens with the first
    study of its modality.
    """
    model_dir = resolve_model_dir(model_dir)
    try:
        ensemble = load_ensemble(model_dir, config.providers, config.threads, config.bf16)
    except ModelIntegrityError as error:
        raise ModelLoadError(str(error)) from error
    except FileNotFoundError as error:
        raise ModelLoadError(str(error)) from error
    except ValidationError as error:
        raise ModelLoadError(
            f"model manifest in {model_dir} is invalid: "
            f"{error.error_count()} problem(s), first: "
            f"{error.errors()[0]['msg']}"
        ) from error
    except ValueError as error:  # e.g. an execution provider that is not available
        raise ModelLoadError(str(error)) from error
    if open_sessions:
        try:
            ensemble.open_sessions()
        except Exception as error:  # ONNX Runtime's errors derive from Exception alone
            raise ModelLoadError(
                f"ONNX Runtime could not open the members of {model_dir}: {error}"
            ) from error
    return ensemble


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def input_kind(path: Path) -> str:
    if is_nifti(path):
        return "nifti"
    if path.is_dir() or path.is_file():
        return "dicom"
    raise InputNotFoundError(f"input not found: {path}")


class Pipeline:
    def __init__(
        self,
        model_dir: Path,
        config: AppConfig | None = None,
        audit_log: AuditLog | None = None,
        open_sessions: bool = False,
    ) -> None:
        """``open_sessions``: open every member now (the service, which must fail at start
        and not at its first study); a one-shot run opens only its study's members."""
        self.config = config or AppConfig()
        self.audit_log = audit_log
        self.rules = (
            SelectionRules.from_data(self.config.selection_rules)
            if self.config.selection_rules is not None
            else None
        )
        self.ensemble = load_verified_ensemble(model_dir, self.config, open_sessions)
        # The operator graph's scheduler is not re-entrant: one run at a time per pipeline.
        self._lock = threading.Lock()

    def model_summary(self) -> ModelSummary:
        manifest = self.ensemble.manifest
        return ModelSummary(
            name=manifest.name,
            version=manifest.version,
            providers=list(self.ensemble.providers),
            members={m.name: m.sha256 for m in manifest.members},
            mlflow_runs=[run.run_id for run in manifest.provenance.mlflow_runs],
        )

    def run(
        self, input_path: Path, output_dir: Path, correlation_id: str | None = None
    ) -> RunReport:
        """Process every qualifying series under ``input_path`` into ``output_dir``.

        Raises the run's ``PipelineError`` after writing a failed report.
        """
        from map_app.app import VesselSegmentationApp  # imports Holoscan: only when running

        recorder = RunRecorder(correlation_id or uuid.uuid4().hex, input_path, output_dir)
        started = _now()
        error: PipelineError | None = None
        kind = "dicom"
        try:
            kind = input_kind(input_path)
            output_dir.mkdir(parents=True, exist_ok=True)
            with self._lock:
                # Explicit argv: Holoscan would otherwise parse the host process's command
                # line (the service's or the CLI's own flags) as its own.
                VesselSegmentationApp(
                    [sys.executable, "minivess-pipeline"],
                    ensemble=self.ensemble,
                    config=self.config,
                    rules=self.rules,
                    recorder=recorder,
                    input_kind=kind,
                ).run()
        except PipelineError as raised:
            error = raised
        except OSError as raised:
            error = OutputError(f"cannot write outputs to {output_dir}: {raised}")
        failed = [s for s in recorder.series if s.status == "failed"]
        status = "failed" if error else ("partial" if failed else "done")
        report = RunReport(
            correlation_id=recorder.correlation_id,
            status=status,
            input_path=str(input_path),
            input_kind=kind,
            started_at=started,
            finished_at=_now(),
            timings_s={k: round(v, 4) for k, v in recorder.timings.items()},
            model=self.model_summary(),
            series=recorder.series,
            skipped_inputs=[SkippedInput.model_validate(s.model_dump()) for s in recorder.skipped],
            error=error.message if error else None,
        )
        write_report(report, output_dir)
        if self.audit_log is not None:
            # Every inference is audited: inputs by keyed hash, models and outputs by SHA-256.
            record_inference(report.model_dump(mode="json"), self.audit_log)
        if error is not None:
            raise error
        return report


def write_report(report: RunReport, output_dir: Path) -> Path | None:
    """Write report.json atomically; None when the folder itself cannot be written."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / REPORT_NAME
        partial = path.with_name(REPORT_NAME + ".partial")
        partial.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(path)
        return path
    except OSError:
        return None
