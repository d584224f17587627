"""Export: the results go back by C-STORE (Storage SCU, PS3.4 B.2.2) to each destination.

One association per destination and attempt, one presentation context per (SOP class,
transfer syntax) of the files (SEG, Parametric Map, Comprehensive 3D SR), plus Explicit
VR Little Endian for each class (PS3.5 A.2), TCP_NODELAY on the socket. Success and the
warnings 0xB000/0xB006/0xB007 count as stored (PS3.4 B.2.3).

Retries are scheduled in the journal, not slept on: an attempt that fails for some
destination sets ``next_export_at`` to ``now + min(backoff * 2**(n-1), max_backoff)``;
after ``export_retries`` retries the job goes to ``dead_letter`` (journal, log and
``minivess_exports_total{outcome="dead_lettered"}``) until ``python -m service
retry-export JOB_ID`` puts it back. Re-sending is idempotent: the files and their SOP
Instance UIDs are the same every time, so a destination keeps one copy.

A destination with ``tls: true`` is reached over TLS (:func:`service.tls.client_context`:
its certificate must verify against ``dicom_tls_ca`` and its host name).

Result notifications (:mod:`service.notify`: FHIR, HL7 v2) are delivery channels of the
same loop: a job is ``done`` when every DICOM destination and every notification channel
has it, and a failing channel counts towards the same retries and dead-letter. The
notifications go out only once every DICOM destination has the results.
"""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt

from service.background import BackgroundLoop
from service.gateway import on_conn_open
from service.journal import Job, Journal
from service.notify import NotificationError
from service.observability.metrics import ApplianceMetrics
from service.settings import ExportDestination, ServiceSettings
from service.spool import Spool
from service.study_recorder import StudyRecorder
from service.tls import client_context
from service.worker import release_spool

log = logging.getLogger(__name__)

STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


class ExportError(Exception):
    """One destination did not take every file."""


def store_files(
    destination: ExportDestination,
    files: list[Path],
    calling_ae: str,
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> None:
    """C-STORE every file to ``destination`` on one association, or raise ExportError.

    ``tls`` is required for a destination marked ``tls`` (never falls back to plain TCP).
    """
    if destination.tls and tls is None:
        raise ExportError("destination requires TLS but no TLS context was given")
    datasets = [pydicom.dcmread(path) for path in files]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    contexts = set()
    for ds in datasets:
        contexts.add((str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
        contexts.add((str(ds.SOPClassUID), str(ExplicitVRLittleEndian)))
    for sop_class, syntax in sorted(contexts):
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate(
        destination.host,
        destination.port,
        ae_title=destination.ae_title,
        evt_handlers=[(evt.EVT_CONN_OPEN, on_conn_open)],
        tls_args=(tls, destination.host) if destination.tls and tls is not None else None,
    )
    if not assoc.is_established:
        state = "rejected" if assoc.is_rejected else "aborted or unreachable"
        raise ExportError(f"association {state}")
    try:
        for path, ds in zip(files, datasets, strict=True):
            try:
                status = assoc.send_c_store(ds)
            except (ValueError, RuntimeError) as error:  # no accepted context, link lost
                raise ExportError(f"{path.name}: {error}") from error
            code = int(status.get("Status", -1)) if status else -1
            if code not in STORED:
                raise ExportError(f"{path.name}: C-STORE status 0x{code & 0xFFFF:04X}")
    finally:
        if assoc.is_established:
            assoc.release()


class Channel(Protocol):
    """Where a job's results go: a DICOM destination or a notification channel."""

    name: str  # how the journal (``delivered``) and the logs name it

    def send(self, job: Job, files: list[Path]) -> None:
        """Deliver, or raise ExportError, NotificationError or OSError."""


class DicomChannel:
    """A C-STORE destination as a channel (:func:`store_files`)."""

    def __init__(
        self, destination: ExportDestination, calling_ae: str, timeout: float,
        tls: ssl.SSLContext | None,
    ) -> None:  # fmt: skip
        self.destination, self.name = destination, destination.name
        self.calling_ae, self.timeout, self.tls = calling_ae, timeout, tls

    def send(self, job: Job, files: list[Path]) -> None:
        store_files(self.destination, files, self.calling_ae, self.timeout, self.tls)
        log.info("job %s: %d files stored at %s", job.job_id, len(files), self.name)


def notification_channels(settings: ServiceSettings) -> list[Channel]:
    """The configured notification channels (none by default); FHIR before HL7."""
    channels: list[Channel] = []
    if settings.fhir_base_url is not None:
        from service.notify.fhir import FhirChannel  # fhir.resources only when used

        channels.append(FhirChannel(settings))
    if settings.hl7_host is not None:
        from service.notify.hl7 import Hl7Channel  # hl7apy only when used

        channels.append(Hl7Channel(settings))
    return channels


class Exporter(BackgroundLoop):
    """The export thread: picks due ``exporting`` jobs from the journal, one at a time."""

    def __init__(
        self,
        settings: ServiceSettings,
        journal: Journal,
        spool: Spool,
        metrics: ApplianceMetrics,
        recorder: StudyRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.spool = spool
        self.metrics = metrics
        self.recorder = recorder
        super().__init__("export", stop_timeout_s=30.0)
        # Built once, at start-up: a bad certificate or CA file stops the service early.
        needs_tls = any(d.tls for d in settings.export_destinations)
        self._tls = client_context(settings) if needs_tls else None
        self.dicom: list[Channel] = [
            DicomChannel(d, settings.ae_title, settings.export_timeout_s, self._tls)
            for d in settings.export_destinations
        ]
        self.notifications = notification_channels(settings)
        # Destinations with results=false get only what a routing rule sends them.
        self._results = {d.name for d in settings.export_destinations if d.results}

    def start(self) -> None:
        if not self.settings.export_destinations:
            log.warning("no export destination configured: results stay in %s",
                        self.settings.outputs_dir)  # fmt: skip
        super().start()

    def step(self) -> float:
        job, due = self.journal.next_export(time.time())
        if job is not None:
            self.export(job)
            return 0.0
        # Poll the journal too: `retry-export` from another process writes there.
        return 1.0 if due is None else min(1.0, max(0.0, due - time.time()))

    def _channels(self, job: Job, errors: list[str]) -> tuple[list[Channel], list[Channel]]:
        """(DICOM channels, notification channels) of the job: the defaults, or those a
        routing rule named (a name no longer configured is an error of this attempt)."""
        if job.destinations is None:
            return [c for c in self.dicom if c.name in self._results], self.notifications
        known = {c.name: c for c in (*self.dicom, *self.notifications)}
        errors.extend(f"{n}: no longer configured" for n in job.destinations if n not in known)
        named = [known[n] for n in job.destinations if n in known]
        return (
            [c for c in named if c in self.dicom],
            [c for c in named if c in self.notifications],
        )

    def backoff(self, attempt: int) -> float:
        delay = self.settings.export_backoff_s * 2 ** max(0, attempt - 1)
        return float(min(delay, self.settings.export_max_backoff_s))

    def export(self, job: Job) -> Job:
        """One attempt to every destination that has not yet got the job's results."""
        files = [Path(p) for p in job.outputs]
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            return self._dead_letter(job, job.delivered, f"result files missing: {missing}")
        delivered = list(job.delivered)
        errors: list[str] = []
        dicom, notifications = self._channels(job, errors)
        for group in (dicom, notifications):
            if errors:  # notify the record system only of results the PACS has
                break
            for channel in group:
                if channel.name in delivered:
                    continue
                started = time.perf_counter()
                try:
                    channel.send(job, files)
                except (ExportError, NotificationError, OSError) as error:
                    errors.append(f"{channel.name}: {error}")
                    continue
                if isinstance(channel, DicomChannel):
                    self.metrics.stage_seconds.labels("export", "").observe(
                        time.perf_counter() - started
                    )
                else:
                    self._count_notification(channel, "sent")
                delivered.append(channel.name)
        if not errors:
            return self._done(job, delivered)
        attempts = job.export_attempts + 1
        # Every notification not delivered now is retried, or dead-lettered with the job.
        outcome = "dead_lettered" if attempts > self.settings.export_retries else "retried"
        for channel in notifications:
            if channel.name not in delivered:
                self._count_notification(channel, outcome)
        if outcome == "dead_lettered":
            return self._dead_letter(job, delivered, "; ".join(errors))
        delay = self.backoff(attempts)
        self.metrics.exports.labels("retried").inc()
        log.warning("job %s: export attempt %d failed (%s); retry in %.1f s",
                    job.job_id, attempts, "; ".join(errors), delay)  # fmt: skip
        return self.journal.retry_export_later(
            job.job_id, attempts, time.time() + delay, delivered, "; ".join(errors)
        )

    def _count_notification(self, channel: Channel, outcome: str) -> None:
        """minivess_notifications_total{channel=fhir|hl7}: the channel name's scheme."""
        self.metrics.notifications.labels(channel.name.partition(":")[0], outcome).inc()

    # Metrics first, then the journal: whoever sees a terminal state sees it counted.
    def _done(self, job: Job, delivered: list[str]) -> Job:
        self.metrics.exports.labels("ok").inc()
        if job.destinations is None:  # routed studies were forwarded, not analysed
            self.metrics.studies.labels("done").inc()
            self.metrics.study_seconds.observe(max(0.0, time.time() - job.last_received_at))
        note = None if job.error_reason == "export-retrying" else job.error
        done = self.journal.mark_done(job.job_id, delivered, note)
        log.info("job %s: done", job.job_id)
        if self.recorder is not None:
            self.recorder.study_exported(done, "done")
        release_spool(self.journal, self.spool, self.metrics, job.study_uid)
        return done

    def _dead_letter(self, job: Job, delivered: list[str], error: str) -> Job:
        self.metrics.exports.labels("dead_lettered").inc()
        dead = self.journal.mark_dead_letter(job.job_id, delivered, error)
        log.error("job %s: export dead-lettered: %s (retry: python -m service retry-export %s)",
                  job.job_id, error, job.job_id)  # fmt: skip
        if self.recorder is not None:
            self.recorder.study_exported(dead, "dead_letter")
        release_spool(self.journal, self.spool, self.metrics, job.study_uid)
        return dead
