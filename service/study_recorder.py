"""The study recorder: what the service writes about each study besides metrics and the
journal, namely its trace (``observability.tracing``), its drift feature rows
(``observability.drift``) and its audit events (``compliance.audit``, into the site's audit
log, :func:`site_audit_log`).

One ``StudyRecorder`` per service, told by the grouper, the worker and the exporter when a
study is queued, processed and exported. Everything it writes is free of PHI: traces and
feature rows carry the correlation id and hashed keys, the audit log keyed hashes of UIDs.
Recording never fails a study: an error here is logged and the study goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from compliance.audit import AuditLog
from compliance.audit.events import record_export, record_study_received
from compliance.audit.identifiers import generate_hmac_key
from operators.run_report import RunReport
from service.journal import Job
from service.observability.drift import FeatureStore, feature_row
from service.observability.tracing import StudyTracer, configure_tracing
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


def site_audit_log(settings: ServiceSettings) -> AuditLog:
    """The site's audit log; its identifier key is created (0600) on first start."""
    key_file = settings.audit_key_file
    if not key_file.is_file():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        generate_hmac_key(key_file)
        key_file.chmod(0o600)
        log.warning("created a new audit identifier key at %s: back it up", key_file)
    return AuditLog(settings.audit_log_path, hmac_key=key_file)


class StudyRecorder:
    def __init__(self, settings: ServiceSettings, audit: AuditLog, model_version: str) -> None:
        self.audit = audit
        self.model_version = model_version
        provider = configure_tracing(
            service_version=model_version,
            spans_dir=settings.traces_dir,
            otlp_endpoint=settings.otlp_endpoint,
        )
        self.tracer = StudyTracer(provider)
        self.features = FeatureStore(settings.drift_store)

    def study_queued(self, job: Job) -> None:
        self._safely("receipt", lambda: record_study_received(
            study_uid=job.study_uid, instances=job.instances, calling_ae=f"via {job.source}",
            correlation_id=job.correlation_id, log=self.audit,
        ))  # fmt: skip

    def study_processed(self, report: RunReport) -> None:
        self._safely("trace", lambda: self.tracer.record_report(report))
        for series in report.series:
            if series.status == "done" and series.features:
                row = feature_row(report.correlation_id, series.series_instance_uid,
                                  series.features, series.modality, self.model_version)  # fmt: skip
                self._safely("drift features", partial(self.features.append, row))

    def study_exported(self, job: Job, outcome: str) -> None:
        uids = []
        for path in job.outputs:
            try:
                uids.append(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID))
            except (OSError, AttributeError, InvalidDicomError):
                uids.append(f"unreadable:{Path(path).name}")
        self._safely("export", lambda: record_export(
            study_uid=job.study_uid, destination=",".join(job.delivered) or "none",
            sop_instance_uids=uids, attempts=job.export_attempts + 1,
            outcome="success" if outcome == "done" else "failure",
            correlation_id=job.correlation_id, log=self.audit,
        ))  # fmt: skip

    @staticmethod
    def _safely(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:
            log.exception("recording the %s failed; the study goes on", what)
