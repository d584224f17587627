"""The job state machine: a job's states and every legal change between them.

A job is one study to process. States::

    received -> queued -> processing -> exporting -> done
        |                     |           ^  |
        |                     v           |  v
        |                   failed        |  dead_letter --(retry-export)--> exporting
        +--(routing rule: route)----------+
        +--(routing rule: ignore)--> ignored

:data:`TRANSITIONS` lists every legal state change. :class:`service.journal.Journal`
makes each one a single transaction that checks the job's state in its UPDATE, so an
illegal one changes nothing and raises :class:`IllegalTransitionError`.
"""

from __future__ import annotations

from typing import Literal

JobState = Literal[
    "received", "queued", "processing", "exporting", "done", "failed", "dead_letter", "ignored"
]
UNFINISHED: tuple[JobState, ...] = ("received", "queued", "processing", "exporting")
TERMINAL: tuple[JobState, ...] = ("done", "failed", "dead_letter", "ignored")

Transition = Literal[
    "queue", "claim", "resume", "export", "fail", "retry_later", "done", "dead_letter",
    "re_export", "route", "ignore",
]  # fmt: skip
# Every state change a job can make: transition -> (states it starts from, state it ends in).
# Each is one UPDATE ... WHERE job_id=? AND state IN (sources), so an illegal one changes
# nothing and raises IllegalTransitionError.
TRANSITIONS: dict[Transition, tuple[tuple[JobState, ...], JobState]] = {
    "queue": (("received",), "queued"),  # the study fell quiet (Grouper)
    "claim": (("queued",), "processing"),  # the worker takes it
    "resume": (("processing",), "queued"),  # a run cut short by a restart
    "export": (("processing",), "exporting"),  # results written
    "fail": (("processing",), "failed"),  # no results
    "retry_later": (("exporting",), "exporting"),  # an export attempt failed
    "done": (("exporting",), "done"),  # every destination has the results
    "dead_letter": (("exporting",), "dead_letter"),  # export retries used up
    "re_export": (("dead_letter", "done"), "exporting"),  # `retry-export`
    "route": (("received",), "exporting"),  # a routing rule forwards the study as received
    "ignore": (("received",), "ignored"),  # a routing rule: not processed (files kept)
}


class IllegalTransitionError(ValueError):
    """The job is not in a state the transition starts from; nothing was changed."""

    def __init__(
        self, job_id: str, transition: Transition, state: str, message: str | None = None
    ) -> None:
        self.job_id, self.transition, self.state = job_id, transition, state
        sources = "/".join(TRANSITIONS[transition][0])
        super().__init__(message or f"job {job_id} is {state}: {transition} needs {sources}")
