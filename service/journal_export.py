"""The journal's side of the export stage: due exports, their leases, retries, the end.

:class:`JournalExport` is a base of :class:`service.journal.Journal` (kept apart so that
``journal.py`` stays readable), like :class:`service.journal_routing.JournalRouting`. An
``exporting`` job is taken by :meth:`JournalExport.next_export` under a lease in the
journal's name; the attempt's outcome (:meth:`~JournalExport.retry_export_later`,
:meth:`~JournalExport.mark_done`, :meth:`~JournalExport.mark_dead_letter`) ends it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from service.job_states import IllegalTransitionError
from service.journal_schema import Job, job_from_row

if TYPE_CHECKING:
    from service.journal_db import Database, Row, Tx


class JournalExport:
    if TYPE_CHECKING:  # provided by service.journal.Journal
        _db: Database
        owner: str
        lease_s: float
        _transition: Callable[..., Job]  # Journal._transition

    def retry_export_later(
        self, job_id: str, attempts: int, due: float, delivered: list[str], error: str
    ) -> Job:
        """``exporting`` stays: attempt ``attempts`` failed, the next is due at ``due``."""
        return self._transition(
            job_id, "retry_later",
            "export_attempts=?, next_export_at=?, delivered=?, error=?, "
            "error_reason='export-retrying'", (attempts, due, json.dumps(delivered), error),
        )  # fmt: skip

    def mark_done(self, job_id: str, delivered: list[str], error: str | None = None) -> Job:
        """``exporting`` -> ``done``: every destination has the results."""
        return self._transition(
            job_id, "done", "delivered=?, next_export_at=NULL, error=?, error_reason=NULL",
            (json.dumps(delivered), error),
        )  # fmt: skip

    def mark_dead_letter(self, job_id: str, delivered: list[str], error: str) -> Job:
        """``exporting`` -> ``dead_letter``: export given up (``retry-export`` restarts it)."""
        return self._transition(
            job_id, "dead_letter",
            "delivered=?, next_export_at=NULL, error=?, error_reason='export-failed'",
            (json.dumps(delivered), error),
        )  # fmt: skip

    def next_export(self, now: float) -> tuple[Job | None, float | None]:
        """The ``exporting`` job due first (or None) and when the next one falls due.

        The job returned is leased to this journal for ``lease_s`` (the attempt's
        retry_later/done/dead_letter ends the lease): another exporter, in this process
        or another gateway, passes over it meanwhile, and takes it up if this one died.
        ``now`` is the schedule's clock (``next_export_at``); leases run on the wall clock.
        """
        clock = time.time()
        lock = self._db.dialect.skip_locked

        def work(tx: Tx) -> tuple[Row | None, float | None]:
            row = tx.one(
                "SELECT * FROM jobs WHERE state='exporting' AND COALESCE(lease_expires_at, 0)<? "
                f"ORDER BY COALESCE(next_export_at, 0) LIMIT 1{lock}",
                (clock,),
            )
            if row is None:
                return None, None
            due = float(row["next_export_at"] or 0.0)
            if due > now:
                return None, due
            tx.execute(
                "UPDATE jobs SET lease_owner=?, lease_expires_at=? WHERE job_id=?",
                (self.owner, clock + self.lease_s, row["job_id"]),
            )
            return row, due

        row, due = self._db.run(work)
        return (job_from_row(row), due) if row is not None else (None, due)

    def retry_export(self, job_id: str) -> Job:
        """Re-trigger the export of a dead-lettered (or done) job: all destinations again."""
        now = time.time()
        try:
            return self._transition(
                job_id, "re_export",
                "export_attempts=0, next_export_at=?, delivered='[]', finished_at=NULL, "
                "error=NULL, error_reason=NULL", (now,), "outputs!='[]'",
            )  # fmt: skip
        except IllegalTransitionError as error:
            raise IllegalTransitionError(
                job_id,
                "re_export",
                error.state,
                f"job {job_id} is {error.state}: nothing to re-export",
            ) from None
