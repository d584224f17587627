"""The journal's side of routing: a quiet study is queued, routed or ignored in one step.

:class:`JournalRouting` is a base of :class:`service.journal.Journal` (kept apart so that
``journal.py`` stays readable). Each decision is one transition whose UPDATE also checks
``last_received_at <= cutoff``: an instance that arrived after the study was judged
complete keeps the job ``received`` (IllegalTransitionError; the next pass judges again)
instead of deciding on a partial study.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from service.journal_schema import Job, job_from_row

if TYPE_CHECKING:
    from service.journal_db import Row


class JournalRouting:
    if TYPE_CHECKING:  # provided by service.journal.Journal
        _rows: Callable[..., list[Row]]  # Journal._rows(sql, args)
        _transition: Callable[..., Job]  # Journal._transition

    def quiet_jobs(self, cutoff: float) -> list[Job]:
        """``received`` jobs with no instance since ``cutoff``, quiet longest first."""
        rows = self._rows(
            "SELECT * FROM jobs WHERE state='received' AND last_received_at<=? "
            "ORDER BY last_received_at",
            (cutoff,),
        )
        return [job_from_row(row) for row in rows]

    def instance_paths(self, job_id: str) -> list[Path]:
        """The spool files of the job's instances, in the order they arrived."""
        rows = self._rows(
            "SELECT path FROM instances WHERE job_id=? ORDER BY received_at, sop_uid", (job_id,)
        )
        return [Path(str(row["path"])) for row in rows]

    def queue_routed(
        self, job_id: str, cutoff: float, priority: int, not_before: float | None, rule: str | None
    ) -> Job:
        """``received`` -> ``queued`` with its priority and earliest start."""
        return self._transition(
            job_id, "queue", "priority=?, not_before=?, rule=?", (priority, not_before, rule),
            "last_received_at<=?", (cutoff,),
        )  # fmt: skip

    def route(
        self,
        job_id: str,
        cutoff: float,
        output_dir: Path,
        files: list[str],
        destinations: list[str],
        rule: str | None,
    ) -> Job:
        """``received`` -> ``exporting``: the received instances go to ``destinations``."""
        return self._transition(
            job_id, "route",
            "output_dir=?, outputs=?, destinations=?, rule=?, next_export_at=0, "
            "export_attempts=0, delivered='[]'",
            (str(output_dir), json.dumps(files), json.dumps(destinations), rule),
            "last_received_at<=?", (cutoff,),
        )  # fmt: skip

    def ignore(
        self, job_id: str, cutoff: float, kept_in: Path, files: list[str], rule: str | None
    ) -> Job:
        """``received`` -> ``ignored``: not processed; the instances are kept in ``kept_in``."""
        return self._transition(
            job_id, "ignore",
            "output_dir=?, outputs=?, rule=?, error_reason='routing-ignored', error=?",
            (str(kept_in), json.dumps(files), rule, f"ignored by routing rule {rule or 'default'}"),
            "last_received_at<=?", (cutoff,),
        )  # fmt: skip
