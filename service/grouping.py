"""Study grouping: a study is complete once no instance of it arrived for a quiet period.

DIMSE has no "end of study" message (PS3.4 B: each C-STORE stands alone, a study may
span several associations), so completeness is inferred from silence: a ``received``
job whose last instance is older than ``quiet_period_s`` becomes ``queued``. The timer
lives in the journal (wall-clock times), so it survives restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from service.background import BackgroundLoop
from service.journal import Journal
from service.observability.metrics import ApplianceMetrics
from service.study_recorder import StudyRecorder

log = logging.getLogger(__name__)


class Grouper(BackgroundLoop):
    """A thread that turns quiet studies into queued jobs and keeps the queue gauge."""

    def __init__(
        self,
        journal: Journal,
        metrics: ApplianceMetrics,
        quiet_period_s: float,
        on_queued: Callable[[], None],
        recorder: StudyRecorder | None = None,
    ) -> None:
        self.journal = journal
        self.recorder = recorder
        self.metrics = metrics
        self.quiet_period_s = quiet_period_s
        self.on_queued = on_queued
        self.tick_s = min(0.5, quiet_period_s / 4)
        super().__init__("grouper", stop_timeout_s=5.0, retry_s=self.tick_s)

    def poll(self, now: float | None = None) -> int:
        """One pass (also callable directly): queue the studies that fell quiet."""
        now = time.time() if now is None else now
        queued = self.journal.queue_quiet_jobs(now - self.quiet_period_s)
        for job in queued:
            receive_s = max(0.0, job.last_received_at - job.first_received_at)
            self.metrics.stage_seconds.labels("receive", "").observe(receive_s)
            if self.recorder is not None:
                self.recorder.study_queued(job)
            log.info(
                "job %s: study %s complete (%d instances, quiet %.1f s), queued",
                job.job_id, job.study_uid, job.instances, self.quiet_period_s,
            )  # fmt: skip
        self.metrics.queue_depth.set(self.journal.count_unfinished())
        if queued:
            self.on_queued()
        return len(queued)

    def step(self) -> float:
        self.poll()
        return self.tick_s
