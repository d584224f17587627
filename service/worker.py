"""The processing worker: one thread runs the (one-at-a-time) pipeline over queued jobs.

For each job: ``pipeline.run(spool/<study>, outputs/<job id>, correlation_id)``, then
the run report's stage times, uncertainty and OOD flags go to the metrics
(``observe_run_report``), and the job
moves on to ``exporting`` (results exist) or ``failed`` (a ``PipelineError``: its
reason and message stay in the journal and in ``outputs/<job id>/report.json``).

A job is claimed in the journal (``queued`` -> ``processing``, attempts + 1) under a
lease that a :class:`LeaseKeeper` thread renews while the pipeline runs; a crash mid-run
leaves it ``processing``: on one host the next start puts it back to ``queued``, scaled
out (workers apart, ``python -m service worker``) another worker takes it once the lease
expires. Only the lease holder records the result. Output SOP Instance UIDs are
deterministic, so a re-run replaces the same files and the destination ends up with one
copy. A study that crashes the process every time fails after ``max_pipeline_attempts``.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from compliance.audit import AuditLog
from map_app.stack import STACK_BYTES
from operators.errors import PipelineError
from operators.run_report import ModelSummary, RunReport
from service.background import BackgroundLoop
from service.journal import IllegalTransitionError, Job, Journal
from service.observability.metrics import ApplianceMetrics, observe_run_report
from service.settings import ServiceSettings
from service.spool import Spool
from service.study_recorder import StudyRecorder

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What the service needs of ``map_app.pipeline.Pipeline``: the worker runs it, the
    service names its model (metrics, traces) and points its audit at the site's log."""

    audit_log: AuditLog | None

    def model_summary(self) -> ModelSummary: ...

    def run(
        self, input_path: Path, output_dir: Path, correlation_id: str | None = None
    ) -> RunReport: ...


def release_spool(journal: Journal, spool: Spool, metrics: ApplianceMetrics, study: str) -> None:
    """Delete a finished study's spooled instances (kept while another job needs them)."""
    spool.remove(journal.release_study(study))
    metrics.spool_bytes.set(spool.bytes_held)
    metrics.queue_depth.set(journal.count_unfinished())


class LeaseKeeper:
    """Renews the journal's lease on one job every third of ``lease_s`` while a run lasts
    (``with LeaseKeeper(journal, job_id): ...``). A renewal that fails (the database
    unreachable) is logged and tried again; a lease found lost is logged once: the run
    goes on, but its result will be refused, another worker has the job."""

    def __init__(self, journal: Journal, job_id: str) -> None:
        self.journal, self.job_id = journal, job_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="minivess-lease", daemon=True)

    def _renew(self) -> None:
        while not self._stop.wait(self.journal.lease_s / 3):
            try:
                if not self.journal.renew_lease(self.job_id):
                    log.warning("job %s: lease lost (another worker took it)", self.job_id)
                    return
            except Exception as error:  # e.g. the database restarting: try again
                log.warning("job %s: lease not renewed: %s", self.job_id, error)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Worker(BackgroundLoop):
    """The single processing thread; ``notify()`` wakes it when a job was queued."""

    def __init__(
        self,
        settings: ServiceSettings,
        journal: Journal,
        spool: Spool,
        runner: Runner,
        metrics: ApplianceMetrics,
        on_exporting: Callable[[], None],
        recorder: StudyRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.journal = journal
        self.spool = spool
        self.runner = runner
        self.metrics = metrics
        self.on_exporting = on_exporting
        super().__init__("worker", stop_timeout_s=60.0)  # a run cut short resumes on restart

    def start(self) -> None:
        # Holoscan runs the graph in this thread and wants a 32 MiB stack (map_app.stack).
        previous = threading.stack_size(STACK_BYTES)
        try:
            super().start()
        finally:
            threading.stack_size(previous)

    def step(self) -> float:
        return 0.0 if self.run_once() else 1.0

    def run_once(self) -> bool:
        """Claim and process the oldest queued job; False when there was none."""
        job = self.journal.claim_next_queued()
        if job is None:
            return False
        self.metrics.queue_depth.set(self.journal.count_unfinished())
        if job.attempts > self.settings.max_pipeline_attempts:
            self._fail(job, "gave-up", f"no result after {job.attempts - 1} interrupted runs")
            return True
        try:
            self._process(job)
        except IllegalTransitionError as error:  # the lease expired and passed on mid-run
            log.warning("job %s: result not kept: %s", job.job_id, error)
        return True

    def _process(self, job: Job) -> None:
        output_dir = self.settings.outputs_dir / job.job_id
        shutil.rmtree(output_dir, ignore_errors=True)  # leftovers of an interrupted run
        log.info("job %s: processing study %s (attempt %d, correlation %s)",
                 job.job_id, job.study_uid, job.attempts, job.correlation_id)  # fmt: skip
        try:
            with LeaseKeeper(self.journal, job.job_id):
                report = self.runner.run(self.spool.study_dir(job.study_uid), output_dir,
                                         correlation_id=job.correlation_id)  # fmt: skip
        except PipelineError as error:
            self._fail(job, error.reason, error.message)
            return
        except Exception as error:  # a bug: recorded, never takes the service down
            log.exception("job %s: pipeline crashed", job.job_id)
            self._fail(job, "internal-error", f"internal error: {type(error).__name__}")
            return
        observe_run_report(self.metrics, report)
        if self.recorder is not None:
            self.recorder.study_processed(report)
        outputs = [
            path for series in report.series if series.status == "done"
            for path in series.outputs.values()
        ]  # fmt: skip
        if not outputs:
            self._fail(job, "no-output", report.error or "the pipeline wrote no results")
            return
        failed = [s for s in report.series if s.status == "failed"]
        note = f"partial: {len(failed)} series failed" if failed else None
        self.journal.mark_exporting(job.job_id, output_dir, outputs, note)
        log.info("job %s: %d result files, exporting", job.job_id, len(outputs))
        self.on_exporting()

    def _fail(self, job: Job, reason: str, message: str) -> None:
        self.metrics.studies.labels("failed").inc()  # before the state: seen => counted
        self.journal.mark_failed(
            job.job_id, reason, message, self.settings.outputs_dir / job.job_id
        )
        log.warning("job %s: failed (%s): %s", job.job_id, reason, message)
        release_spool(self.journal, self.spool, self.metrics, job.study_uid)
