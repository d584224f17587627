"""The job journal: SQLite (WAL), the single source of truth for studies and their jobs.

:class:`Journal` is every read and write of the journal file. What it stores is in two
modules beside it, re-exported here so that callers import from ``service.journal`` alone:

- :mod:`service.job_states`: the states a job (one study to process) goes through,
  ``received -> queued -> processing -> exporting -> done`` (or ``failed``,
  ``dead_letter``), :data:`TRANSITIONS` (every legal change) and
  :class:`IllegalTransitionError`;
- :mod:`service.journal_schema`: the ``jobs`` and ``instances`` tables, the
  :class:`Job` and :class:`Registered` records and how a connection is opened.

Each transition is one transaction that checks the job's state in its UPDATE (an illegal
one raises :class:`IllegalTransitionError`), so the journal survives a crash at any point
and two writers cannot skip a state; on start :meth:`Journal.resume` puts interrupted
work back (``processing`` -> ``queued``; ``exporting`` stays, exports are idempotent).
The ``instances`` table maps each spooled SOP Instance UID to its study and job and is
what makes a re-sent instance a duplicate.

Durability: job transitions commit with ``synchronous=FULL`` (fsync per commit). Instance
registrations commit without their own fsync (``synchronous=NORMAL`` on a second
connection; the next FULL commit syncs them with it): the instance's spool file is
already fsynced before it is registered, and start-up reconciliation registers every
spool file the journal lacks (``Service.reconcile``), so a registration lost to a power
cut is rebuilt, never the instance lost. That saves one of three fsyncs per C-STORE.

Holds DICOM UIDs (not identifying on their own) and never patient names or IDs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.job_states import (
    TERMINAL,
    TRANSITIONS,
    UNFINISHED,
    IllegalTransitionError,
    JobState,
    Transition,
)
from service.journal_routing import JournalRouting
from service.journal_schema import SCHEMA, Job, Registered, connect, job_from_row, migrate

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "UNFINISHED",
    "IllegalTransitionError",
    "Job",
    "JobState",
    "Journal",
    "Registered",
    "Transition",
]


class Journal(JournalRouting):
    """Thread-safe access to the journal file (one connection, one lock); the routing
    decisions (queue with a priority, route, ignore) are in :class:`JournalRouting`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = connect(path, "FULL")
        self._db.executescript(SCHEMA)
        migrate(self._db)
        self._registrations = connect(path, "NORMAL")

    def close(self) -> None:
        with self._lock:
            self._registrations.close()
            self._db.close()

    @contextmanager
    def _tx(self, db: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        db = self._db if db is None else db
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ instances

    def is_known(self, sop_uid: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM instances WHERE sop_uid=?", (sop_uid,))
            return row.fetchone() is not None

    def has_open_job(self, study_uid: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM jobs WHERE study_uid=? AND state='received'", (study_uid,)
            )
            return row.fetchone() is not None

    def register_instance(
        self,
        study_uid: str,
        sop_uid: str,
        path: Path,
        size: int,
        *,
        source: str = "dimse",
        now: float | None = None,
    ) -> Registered:
        """Record a spooled instance in the study's open (``received``) job, creating it.

        A SOP Instance UID already known is a duplicate: nothing is added, but it keeps
        the study's open job (if any) from becoming due. Committed without an fsync of
        its own (see the module docstring).
        """
        now = time.time() if now is None else now
        with self._tx(self._registrations) as db:
            open_job = db.execute(
                "SELECT job_id FROM jobs WHERE study_uid=? AND state='received'", (study_uid,)
            ).fetchone()
            if db.execute("SELECT 1 FROM instances WHERE sop_uid=?", (sop_uid,)).fetchone():
                if open_job:
                    db.execute(
                        "UPDATE jobs SET last_received_at=MAX(last_received_at, ?), "
                        "updated_at=? WHERE job_id=?",
                        (now, now, open_job["job_id"]),
                    )
                return Registered(job_id=None, duplicate=True, new_job=False)
            if open_job:
                job_id, new_job = str(open_job["job_id"]), False
            else:
                job_id, new_job = uuid.uuid4().hex, True
                db.execute(
                    "INSERT INTO jobs (job_id, study_uid, state, source, correlation_id, "
                    "created_at, first_received_at, last_received_at, updated_at) "
                    "VALUES (?, ?, 'received', ?, ?, ?, ?, ?, ?)",
                    (job_id, study_uid, source, uuid.uuid4().hex, now, now, now, now),
                )
            db.execute(
                "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?)",
                (sop_uid, study_uid, job_id, str(path), size, now),
            )
            db.execute(
                "UPDATE jobs SET instances=instances+1, updated_at=?, "
                "first_received_at=MIN(first_received_at, ?), "
                "last_received_at=MAX(last_received_at, ?) WHERE job_id=?",
                (now, now, now, job_id),
            )
        return Registered(job_id=job_id, duplicate=False, new_job=new_job)

    def known_sop_uids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT sop_uid FROM instances")}

    def release_study(self, study_uid: str) -> list[Path]:
        """Forget the study's instances unless another job of it is unfinished.

        Returns the spool files to delete (rows first: a crash leaves orphan files, which
        start-up reconciliation re-registers, never rows without files).
        """
        marks = ",".join("?" * len(UNFINISHED))
        with self._tx() as db:
            busy = db.execute(
                f"SELECT 1 FROM jobs WHERE study_uid=? AND state IN ({marks})",
                (study_uid, *UNFINISHED),
            ).fetchone()
            if busy:
                return []
            rows = db.execute("SELECT path FROM instances WHERE study_uid=?", (study_uid,))
            paths = [Path(r[0]) for r in rows.fetchall()]
            db.execute("DELETE FROM instances WHERE study_uid=?", (study_uid,))
        return paths

    # ----------------------------------------------------------------------- jobs

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return job_from_row(row) if row else None

    def list_jobs(self, states: tuple[str, ...] | None = None, limit: int = 1000) -> list[Job]:
        query, args = "SELECT * FROM jobs", [*(states or ())]
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
        query += " ORDER BY created_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [job_from_row(r) for r in rows]

    def unfinished_job_of(self, study_uid: str) -> str | None:
        """The study's newest unfinished job (where a re-sent instance of it already is);
        one lookup in the ``jobs_study_created`` index."""
        marks = ",".join("?" * len(UNFINISHED))
        with self._lock:
            row = self._db.execute(
                f"SELECT job_id FROM jobs WHERE study_uid=? AND state IN ({marks}) "
                "ORDER BY created_at DESC LIMIT 1",
                (study_uid, *UNFINISHED),
            ).fetchone()
        return str(row[0]) if row else None

    def count_unfinished(self) -> int:
        marks = ",".join("?" * len(UNFINISHED))
        with self._lock:
            row = self._db.execute(
                f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", UNFINISHED
            ).fetchone()
        return int(row[0])

    def _transition(
        self,
        job_id: str,
        transition: Transition,
        assignments: str = "",
        values: tuple[object, ...] = (),
        condition: str = "1",
        condition_values: tuple[object, ...] = (),
    ) -> Job:
        """Move one job along ``transition`` in one transaction, setting ``assignments``
        (this module's SQL, never a caller's) besides the state, if ``condition`` holds;
        ``KeyError`` for an unknown job, :class:`IllegalTransitionError` when it is in
        another state or the condition does not hold."""
        sources, target = TRANSITIONS[transition]
        now = time.time()
        columns, stamps = ["state=?", "updated_at=?"], [target, now]
        if target in TERMINAL:
            columns.append("finished_at=?")
            stamps.append(now)
        marks = ",".join("?" * len(sources))
        sql = (
            f"UPDATE jobs SET {', '.join([*columns, assignments] if assignments else columns)} "
            f"WHERE job_id=? AND state IN ({marks}) AND {condition}"
        )
        with self._tx() as db:
            changed = db.execute(
                sql, (*stamps, *values, job_id, *sources, *condition_values)
            ).rowcount
            row = db.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id}")
        if not changed:
            raise IllegalTransitionError(job_id, transition, str(row["state"]))
        return job_from_row(row)

    def mark_exporting(
        self,
        job_id: str,
        output_dir: Path,
        outputs: list[str],
        note: str | None = None,
        due: float | None = None,
    ) -> Job:
        """``processing`` -> ``exporting``: results written, first export due at ``due``."""
        return self._transition(
            job_id, "export",
            "output_dir=?, outputs=?, next_export_at=?, export_attempts=0, delivered='[]', "
            "error=?", (str(output_dir), json.dumps(outputs), time.time() if due is None else due,
                        note),
        )  # fmt: skip

    def mark_failed(self, job_id: str, reason: str, message: str, output_dir: Path) -> Job:
        """``processing`` -> ``failed``: no results (``reason`` and ``message`` kept)."""
        return self._transition(
            job_id, "fail", "error=?, error_reason=?, output_dir=?",
            (message, reason, str(output_dir)),
        )  # fmt: skip

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

    def queue_quiet_jobs(self, cutoff: float) -> list[Job]:
        """``received`` jobs with no instance since ``cutoff`` become ``queued``."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE state='received' AND last_received_at<=? "
                "ORDER BY last_received_at",
                (cutoff,),
            ).fetchall()
            db.execute(
                "UPDATE jobs SET state='queued', updated_at=? "
                "WHERE state='received' AND last_received_at<=?",
                (time.time(), cutoff),
            )
        return [job_from_row(r) for r in rows]

    def claim_next_queued(self, now: float | None = None) -> Job | None:
        """The ``queued`` job of highest priority, oldest first, whose ``not_before`` has
        come (off-peak studies wait), now ``processing`` with one more attempt."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(
                "SELECT job_id FROM jobs WHERE state='queued' AND COALESCE(not_before, 0)<=? "
                "ORDER BY priority DESC, last_received_at LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state='processing', attempts=attempts+1, updated_at=? "
                "WHERE job_id=?",
                (time.time(), row[0]),
            )
            claimed = db.execute("SELECT * FROM jobs WHERE job_id=?", (row[0],)).fetchone()
        return job_from_row(claimed)

    def next_export(self, now: float) -> tuple[Job | None, float | None]:
        """The ``exporting`` job due first (or None) and when the next one falls due."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE state='exporting' "
                "ORDER BY COALESCE(next_export_at, 0) LIMIT 1"
            ).fetchone()
        if row is None:
            return None, None
        due = row["next_export_at"] or 0.0
        return (job_from_row(row), due) if due <= now else (None, due)

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

    def resume(self, now: float | None = None) -> list[Job]:
        """After a restart: interrupted runs go back to ``queued``; all unfinished jobs.

        Studies still ``received`` restart their quiet period: while we were down a sender
        could not reach us, so the silence says nothing about the study being complete
        (queuing it now would give a partial study, and the re-sent rest a second job).
        """
        now = time.time() if now is None else now
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state='queued', updated_at=? WHERE state='processing'", (now,)
            )
            db.execute(
                "UPDATE jobs SET last_received_at=MAX(last_received_at, ?), updated_at=? "
                "WHERE state='received'",
                (now, now),
            )
        return self.list_jobs(UNFINISHED)
