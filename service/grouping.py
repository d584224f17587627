"""Study grouping: a study is complete once no instance of it arrived for a quiet period.

DIMSE has no "end of study" message (PS3.4 B: each C-STORE stands alone, a study may
span several associations), so completeness is inferred from silence: a ``received``
job whose last instance is older than ``quiet_period_s`` becomes ``queued``. The timer
lives in the journal (wall-clock times), so it survives restarts; but downtime is not
silence: a sender cut off by a crash can only resume once the service is back, so after
a start no study is judged complete before a whole quiet period has passed.

With a :class:`service.routing.Router` each complete study is judged by the routing
rules in the same pass, one transaction per study: queued with its priority (and, for
off-peak studies, the time it may start), routed to another destination (straight to
``exporting``) or ignored (its spool files released, kept hard-linked elsewhere).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from service.background import BackgroundLoop
from service.journal import IllegalTransitionError, Job, Journal
from service.observability.metrics import ApplianceMetrics
from service.routing import Router
from service.spool import Spool
from service.study_recorder import StudyRecorder
from service.worker import release_spool

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
        router: tuple[Router, Spool, Callable[[], None]] | None = None,
    ) -> None:
        """``router``: the router, the spool (to release ignored studies) and what wakes
        the exporter (for routed studies); None = queue every study at normal priority."""
        self.router = router
        self.journal = journal
        self.recorder = recorder
        self.metrics = metrics
        self.quiet_period_s = quiet_period_s
        self.on_queued = on_queued
        self.tick_s = min(0.5, quiet_period_s / 4)
        # Until then nothing counts as quiet (set by start(); a bare poll() is not held).
        self.hold_until = 0.0
        super().__init__("grouper", stop_timeout_s=5.0, retry_s=self.tick_s)

    def start(self) -> None:
        self.hold_until = time.time() + self.quiet_period_s
        super().start()

    def poll(self, now: float | None = None) -> int:
        """One pass (also callable directly): queue the studies that fell quiet."""
        now = time.time() if now is None else now
        cutoff = now - self.quiet_period_s
        if now < self.hold_until:
            # Within a quiet period of the start nothing is quiet yet: what arrived before
            # the start may be the head of a study whose sender resumes now.
            queued: list[Job] = []
        elif self.router is None:
            queued = self.journal.queue_quiet_jobs(cutoff)
        else:
            queued = [job for job in self._route(cutoff, now) if job.state == "queued"]
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

    def _route(self, cutoff: float, now: float) -> list[Job]:
        """Judge each complete study by the rules; the jobs as decided."""
        assert self.router is not None
        router, spool, on_routed = self.router
        decided = []
        for job in self.journal.quiet_jobs(cutoff):
            try:
                job = router.dispatch(self.journal, job, cutoff, now)
            except IllegalTransitionError:
                continue  # an instance came in meanwhile: not complete after all
            action = {"queued": "process", "exporting": "route"}.get(job.state, "ignore")
            self.metrics.routing_decisions.labels(action).inc()
            log.info("job %s: routing %s (rule %s, priority %d%s)", job.job_id, action,
                     job.rule or "default", job.priority,
                     ", waits for the off-peak window" if job.not_before else "")  # fmt: skip
            if job.state != "queued" and self.recorder is not None:
                self.recorder.study_queued(job)  # the receipt is audited whatever the action
            if job.state == "ignored":
                release_spool(self.journal, spool, self.metrics, job.study_uid)
            elif job.state == "exporting":
                on_routed()
            decided.append(job)
        return decided

    def step(self) -> float:
        self.poll()
        return self.tick_s
