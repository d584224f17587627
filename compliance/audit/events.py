"""One call per audited event, for the pipeline, the gateway, deploy.sh and the splits.

Each helper takes an ``AuditLog`` (or ``None``: the site log from the environment,
``AuditLog.from_settings()``) and writes one entry with identifiers hashed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from compliance.audit.log import AuditLog
from compliance.audit.schema import AuditEntry, Outcome
from models.digest import sha256_file

INFERENCE = "inference"
STUDY_RECEIVED = "study.received"
STUDY_EXPORTED = "study.exported"
DEPLOY = "deploy"
TEST_SET_ACCESS = "testset.access"


def _log(log: AuditLog | None) -> AuditLog:
    return log if log is not None else AuditLog.from_settings()


def _file_sha256(path: str | Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def audited_model_version(model: Mapping[str, Any]) -> str | None:
    """The model version an inference entry names: the ensemble's version and, when its
    manifest records them, the MLflow run(s) that built it, e.g. ``2.2.0 (MLflow run 3f2a)``.
    """
    version, runs = model.get("version"), model.get("mlflow_runs") or []
    if version is None or not runs:
        return version
    return f"{version} (MLflow run{'s' if len(runs) > 1 else ''} {', '.join(runs)})"


def record_inference(report: Mapping[str, Any], log: AuditLog | None = None) -> list[AuditEntry]:
    """One entry per series of a run report (``operators.run_report.RunReport``, dumped).

    Inputs by hashed study/series UID, models by SHA-256, outputs by content SHA-256
    (file names may carry UIDs), the uncertainty score and the out-of-distribution flag.
    """
    audit = _log(log)
    model = report.get("model", {})
    entries = []
    for series in report.get("series", []):
        outputs = {kind: _file_sha256(path) for kind, path in series.get("outputs", {}).items()}
        entries.append(
            audit.append(
                event_type=INFERENCE,
                actor="pipeline",
                resource="series:" + audit.hash_identifier(series["series_instance_uid"]),
                action="segment",
                outcome="success" if series.get("status") == "done" else "failure",
                identifiers={
                    "study_uid": series["study_instance_uid"],
                    "series_uid": series["series_instance_uid"],
                },
                details={
                    "input_kind": report.get("input_kind"),
                    "modality": series.get("modality"),
                    "shape": series.get("shape"),
                    "spacing_mm": series.get("spacing_mm"),
                    "models": model.get("members", {}),
                    "providers": model.get("providers", []),
                    "outputs_sha256": outputs,
                    "vessel_volume_ml": series.get("vessel_volume_ml"),
                    "uncertainty_score": series.get("uncertainty_score"),
                    "ood_threshold": series.get("ood_threshold"),
                    "out_of_distribution": series.get("out_of_distribution"),
                    "error_reason": series.get("error_reason"),
                },
                correlation_id=report.get("correlation_id"),
                model_version=audited_model_version(model),
            )
        )
    return entries


def record_study_received(
    *,
    study_uid: str,
    instances: int,
    calling_ae: str,
    patient_id: str | None = None,
    accession: str | None = None,
    outcome: Outcome = "success",
    details: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
    log: AuditLog | None = None,
) -> AuditEntry:
    audit = _log(log)
    identifiers = {"study_uid": study_uid}
    identifiers |= {"patient_id": patient_id} if patient_id else {}
    identifiers |= {"accession": accession} if accession else {}
    return audit.append(
        event_type=STUDY_RECEIVED,
        actor=f"gateway:{calling_ae}",
        resource="study:" + audit.hash_identifier(study_uid),
        action="receive",
        outcome=outcome,
        identifiers=identifiers,
        details={"instances": instances, **(details or {})},
        correlation_id=correlation_id,
    )


def record_export(
    *,
    study_uid: str,
    destination: str,
    sop_instance_uids: Iterable[str],
    attempts: int,
    outcome: Outcome,
    details: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
    log: AuditLog | None = None,
) -> AuditEntry:
    audit = _log(log)
    return audit.append(
        event_type=STUDY_EXPORTED,
        actor="gateway",
        resource="study:" + audit.hash_identifier(study_uid),
        action="export",
        outcome=outcome,
        identifiers={"study_uid": study_uid},
        details={
            "destination": destination,
            "sop_instance_uids": [audit.hash_identifier(uid) for uid in sop_instance_uids],
            "attempts": attempts,
            **(details or {}),
        },
        correlation_id=correlation_id,
    )


def record_deploy(
    *,
    action: str,
    release: str,
    outcome: Outcome,
    details: Mapping[str, Any] | None = None,
    log: AuditLog | None = None,
) -> AuditEntry:
    """deploy.sh steps: verify, install, health, rollback (also ``python -m
    compliance.audit append`` from shell)."""
    return _log(log).append(
        event_type=DEPLOY,
        actor="deploy.sh",
        resource=f"release:{release}",
        action=action,
        outcome=outcome,
        details=details,
    )


def record_test_set_access(
    split_dir: str | Path,
    *,
    expected_sha256: str | None,
    actual_sha256: str,
    purpose: str | None = None,
    log: AuditLog | None = None,
) -> AuditEntry:
    """A read of the locked test split: who (the program), why, and the hash check.

    Call it before the lockout decision; a failure to write the entry propagates, so
    no read of the test set goes unrecorded.
    """
    granted = expected_sha256 is not None and expected_sha256 == actual_sha256
    return _log(log).append(
        event_type=TEST_SET_ACCESS,
        actor=Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python",
        resource=f"split:{Path(split_dir).name}",
        action="read",
        outcome="success" if granted else "refused",
        details={
            "purpose": purpose or "unspecified",
            "split_dir": str(split_dir),
            "expected_sha256": expected_sha256,
            "actual_sha256": actual_sha256,
            "hash_check": "match" if granted else "missing" if not expected_sha256 else "mismatch",
        },
        data_version=actual_sha256,
    )
