"""The job journal: the single source of truth for studies and their jobs.

:class:`Journal` is every read and write of the journal, written once and run on either
backend of :mod:`service.journal_db`: a SQLite file (WAL; the default, one host) or
PostgreSQL (:mod:`service.journal_pg`; gateway and workers apart, sharing it). The SQL
that differs between them is the :class:`~service.journal_db.Dialect`. What the journal
stores is in modules beside it, re-exported here so that callers import from
``service.journal`` alone:

- :mod:`service.job_states`: the states a job (one study to process) goes through,
  ``received -> queued -> processing -> exporting -> done`` (or ``failed``,
  ``dead_letter``), :data:`TRANSITIONS` (every legal change) and
  :class:`IllegalTransitionError`;
- :mod:`service.journal_schema`: the ``jobs`` and ``instances`` tables and the
  :class:`Job` and :class:`Registered` records.

Each transition is one transaction that checks the job's state in its UPDATE (an illegal
one raises :class:`IllegalTransitionError`), so the journal survives a crash at any point
and two writers cannot skip a state. The ``instances`` table maps each spooled SOP
Instance UID to its study and job and is what makes a re-sent instance a duplicate.

Leases: a worker claims a job (``queued`` -> ``processing``) with a lease in its name
(:attr:`Journal.owner`, one per Journal object) that it renews while it runs
(:meth:`Journal.renew_lease`); only the holder can record the result, so one result per
study is kept. A job whose lease expired (its worker died) is claimed again by the next
worker, attempts + 1. On PostgreSQL the claim's ``SELECT ... FOR UPDATE SKIP LOCKED``
lets workers claim side by side. An exporter takes a due export with a lease the same
way, so two gateways never send one job at once. On start, a single host (the SQLite
file, :attr:`~service.journal_db.Database.exclusive`) puts every interrupted run back at
once (``processing`` -> ``queued``); scaled out, the leases do that.

Durability: job transitions commit with an fsync (SQLite ``synchronous=FULL``,
PostgreSQL's default). Instance registrations commit without their own (``relaxed``:
SQLite ``synchronous=NORMAL`` on a second connection, PostgreSQL
``synchronous_commit=off``): the instance's spool file is already fsynced before it is
registered, and start-up reconciliation registers every spool file the journal lacks
(``Service.reconcile``), so a registration lost to a power cut is rebuilt, never the
instance lost. That saves one of three fsyncs per C-STORE.

Holds DICOM UIDs (not identifying on their own) and never patient names or IDs.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from service.job_states import (
    TERMINAL,
    TRANSITIONS,
    UNFINISHED,
    IllegalTransitionError,
    JobState,
    Transition,
)
from service.journal_db import Database, Row, Tx, init_schema, open_database
from service.journal_export import JournalExport
from service.journal_routing import JournalRouting
from service.journal_schema import ADDED_COLUMNS, SCHEMA, Job, Registered, job_from_row

if TYPE_CHECKING:
    from service.settings import ServiceSettings

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

DEFAULT_LEASE_S = 60.0


def _marks(values: tuple[object, ...]) -> str:
    return ",".join("?" * len(values))


class Journal(JournalExport, JournalRouting):
    """Thread-safe access to the journal (one connection per backend and level, one lock);
    the export stage is in :class:`JournalExport`, the routing decisions (queue with a
    priority, route, ignore) in :class:`JournalRouting`. ``target``: a SQLite file path
    or a ``postgresql://`` URL (``password`` from the settings' secret file);
    ``lease_s``: how long a claim holds without renewal."""

    def __init__(
        self,
        target: Path | str,
        *,
        password: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self._db: Database = open_database(target, password)
        self.path = Path(target) if isinstance(target, Path) else None
        self.lease_s = lease_s
        # Names this process's claims in the journal (host and pid say whose they were).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._db.run(lambda tx: init_schema(tx, SCHEMA, ADDED_COLUMNS))

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Journal:
        """The journal the settings name: ``journal_url`` (PostgreSQL, with
        ``journal_password``) or the SQLite file under ``var_dir``."""
        secret = settings.journal_password
        return cls(
            settings.journal_target,
            password=secret.get_secret_value() if secret is not None else None,
            lease_s=settings.job_lease_s,
        )

    @property
    def exclusive(self) -> bool:
        """One process owns this journal (the single host's SQLite file)."""
        return self._db.exclusive

    @property
    def description(self) -> str:
        return self._db.description

    def close(self) -> None:
        self._db.close()

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[Row]:
        return self._db.run(lambda tx: tx.all(sql, args))

    def _row(self, sql: str, args: tuple[object, ...] = ()) -> Row | None:
        return self._db.run(lambda tx: tx.one(sql, args))

    # ------------------------------------------------------------------ instances

    def is_known(self, sop_uid: str) -> bool:
        return self._row("SELECT 1 AS known FROM instances WHERE sop_uid=?", (sop_uid,)) is not None

    def has_open_job(self, study_uid: str) -> bool:
        sql = "SELECT 1 AS known FROM jobs WHERE study_uid=? AND state='received'"
        return self._row(sql, (study_uid,)) is not None

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
        greatest, least = self._db.dialect.greatest, self._db.dialect.least

        def work(tx: Tx) -> Registered:
            open_job = tx.one(
                "SELECT job_id FROM jobs WHERE study_uid=? AND state='received'", (study_uid,)
            )
            if tx.one("SELECT 1 AS known FROM instances WHERE sop_uid=?", (sop_uid,)):
                if open_job:
                    tx.execute(
                        f"UPDATE jobs SET last_received_at={greatest}(last_received_at, ?), "
                        "updated_at=? WHERE job_id=?",
                        (now, now, open_job["job_id"]),
                    )
                return Registered(job_id=None, duplicate=True, new_job=False)
            if open_job:
                job_id, new_job = str(open_job["job_id"]), False
            else:
                job_id, new_job = uuid.uuid4().hex, True
                tx.execute(
                    "INSERT INTO jobs (job_id, study_uid, state, source, correlation_id, "
                    "created_at, first_received_at, last_received_at, updated_at) "
                    "VALUES (?, ?, 'received', ?, ?, ?, ?, ?, ?)",
                    (job_id, study_uid, source, uuid.uuid4().hex, now, now, now, now),
                )
            tx.execute(
                "INSERT INTO instances (sop_uid, study_uid, job_id, path, size, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (sop_uid, study_uid, job_id, str(path), size, now),
            )
            tx.execute(
                "UPDATE jobs SET instances=instances+1, updated_at=?, "
                f"first_received_at={least}(first_received_at, ?), "
                f"last_received_at={greatest}(last_received_at, ?) WHERE job_id=?",
                (now, now, now, job_id),
            )
            return Registered(job_id=job_id, duplicate=False, new_job=new_job)

        return self._db.run(work, relaxed=True)

    def known_sop_uids(self) -> set[str]:
        return {str(r["sop_uid"]) for r in self._rows("SELECT sop_uid FROM instances")}

    def release_study(self, study_uid: str) -> list[Path]:
        """Forget the study's instances unless another job of it is unfinished.

        Returns the spool files to delete (rows first: a crash leaves orphan files, which
        start-up reconciliation re-registers, never rows without files).
        """

        def work(tx: Tx) -> list[Path]:
            busy = tx.one(
                f"SELECT 1 AS busy FROM jobs WHERE study_uid=? AND state IN ({_marks(UNFINISHED)})",
                (study_uid, *UNFINISHED),
            )
            if busy:
                return []
            rows = tx.all("SELECT path FROM instances WHERE study_uid=?", (study_uid,))
            tx.execute("DELETE FROM instances WHERE study_uid=?", (study_uid,))
            return [Path(str(r["path"])) for r in rows]

        return self._db.run(work)

    # ----------------------------------------------------------------------- jobs

    def get(self, job_id: str) -> Job | None:
        row = self._row("SELECT * FROM jobs WHERE job_id=?", (job_id,))
        return job_from_row(row) if row else None

    def list_jobs(self, states: tuple[str, ...] | None = None, limit: int = 1000) -> list[Job]:
        query, args = "SELECT * FROM jobs", [*(states or ())]
        if states:
            query += f" WHERE state IN ({_marks(states)})"
        query += " ORDER BY created_at DESC LIMIT ?"
        return [job_from_row(r) for r in self._rows(query, (*args, limit))]

    def unfinished_job_of(self, study_uid: str) -> str | None:
        """The study's newest unfinished job (where a re-sent instance of it already is);
        one lookup in the ``jobs_study_created`` index."""
        row = self._row(
            f"SELECT job_id FROM jobs WHERE study_uid=? AND state IN ({_marks(UNFINISHED)}) "
            "ORDER BY created_at DESC LIMIT 1",
            (study_uid, *UNFINISHED),
        )
        return str(row["job_id"]) if row else None

    def count_unfinished(self) -> int:
        sql = f"SELECT COUNT(*) AS n FROM jobs WHERE state IN ({_marks(UNFINISHED)})"
        row = self._row(sql, UNFINISHED)
        return int(row["n"]) if row else 0

    def count_queued(self) -> int:
        """Jobs waiting for a worker (``queued``): what the worker tier scales on."""
        row = self._row("SELECT COUNT(*) AS n FROM jobs WHERE state='queued'")
        return int(row["n"]) if row else 0

    def _transition(
        self,
        job_id: str,
        transition: Transition,
        assignments: str = "",
        values: tuple[object, ...] = (),
        condition: str = "1=1",
        condition_values: tuple[object, ...] = (),
    ) -> Job:
        """Move one job along ``transition`` in one transaction, setting ``assignments``
        (this module's SQL, never a caller's) besides the state, if ``condition`` holds;
        ``KeyError`` for an unknown job, :class:`IllegalTransitionError` when it is in
        another state or the condition does not hold. Every transition but into
        ``processing`` ends the job's lease."""
        sources, target = TRANSITIONS[transition]
        now = time.time()
        columns, stamps = ["state=?", "updated_at=?"], [target, now]
        if target in TERMINAL:
            columns.append("finished_at=?")
            stamps.append(now)
        if target != "processing":
            columns.append("lease_owner=NULL, lease_expires_at=NULL")
        if "processing" in sources and target != "processing":
            # The result of a run is recorded by the worker holding the lease only: a
            # worker whose lease expired (and whose job another took) keeps nothing.
            condition, condition_values = (
                f"({condition}) AND lease_owner=?",
                (*condition_values, self.owner),
            )
        sql = (
            f"UPDATE jobs SET {', '.join([*columns, assignments] if assignments else columns)} "
            f"WHERE job_id=? AND state IN ({_marks(sources)}) AND {condition}"
        )

        def work(tx: Tx) -> tuple[int, Row | None]:
            changed = tx.execute(sql, (*stamps, *values, job_id, *sources, *condition_values))
            return changed.rowcount, tx.one("SELECT * FROM jobs WHERE job_id=?", (job_id,))

        changed, row = self._db.run(work)
        if row is None:
            raise KeyError(f"no job {job_id}")
        if not changed:
            state = str(row["state"])
            if state == "processing" and row["lease_owner"] != self.owner:
                raise IllegalTransitionError(job_id, transition, state,
                    f"job {job_id}: the lease passed to {row['lease_owner']}; this run's "
                    "result is not kept")  # fmt: skip
            raise IllegalTransitionError(job_id, transition, state)
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

    def queue_quiet_jobs(self, cutoff: float) -> list[Job]:
        """``received`` jobs with no instance since ``cutoff`` become ``queued``."""

        def work(tx: Tx) -> list[Row]:
            rows = tx.all(
                "SELECT * FROM jobs WHERE state='received' AND last_received_at<=? "
                "ORDER BY last_received_at",
                (cutoff,),
            )
            tx.execute(
                "UPDATE jobs SET state='queued', updated_at=? "
                "WHERE state='received' AND last_received_at<=?",
                (time.time(), cutoff),
            )
            return rows

        return [job_from_row(r) for r in self._db.run(work)]

    def claim_next_queued(self, now: float | None = None) -> Job | None:
        """The ``queued`` job of highest priority, oldest first, whose ``not_before`` has
        come (off-peak studies wait), or a ``processing`` job whose lease expired (its
        worker died): now ``processing`` under this journal's lease, one more attempt.
        ``now`` is the schedule's clock (``not_before``); leases run on the wall clock."""
        clock = time.time()
        now = clock if now is None else now
        lock = self._db.dialect.skip_locked

        def work(tx: Tx) -> Row | None:
            row = tx.one(
                "SELECT job_id FROM jobs WHERE (state='queued' AND COALESCE(not_before, 0)<=?) "
                "OR (state='processing' AND COALESCE(lease_expires_at, 0)<?) "
                f"ORDER BY priority DESC, last_received_at LIMIT 1{lock}",
                (now, clock),
            )
            if row is None:
                return None
            tx.execute(
                "UPDATE jobs SET state='processing', attempts=attempts+1, updated_at=?, "
                "lease_owner=?, lease_expires_at=? WHERE job_id=?",
                (clock, self.owner, clock + self.lease_s, row["job_id"]),
            )
            return tx.one("SELECT * FROM jobs WHERE job_id=?", (row["job_id"],))

        claimed = self._db.run(work)
        return job_from_row(claimed) if claimed else None

    def renew_lease(self, job_id: str) -> bool:
        """Extend this journal's lease on a job it holds; False when it holds it no more
        (it expired and another worker took the job, or the job moved on)."""
        now = time.time()
        return self._db.run(lambda tx: tx.execute(
            "UPDATE jobs SET lease_expires_at=? WHERE job_id=? AND lease_owner=?",
            (now + self.lease_s, job_id, self.owner),
        ).rowcount) == 1  # fmt: skip

    def resume(self, now: float | None = None, requeue_processing: bool | None = None) -> list[Job]:
        """After a restart: interrupted runs go back to ``queued``; all unfinished jobs.

        ``requeue_processing`` (default: when the journal is a single host's file) puts
        every ``processing`` job back and ends every lease: nobody else can hold one.
        Scaled out, other workers may be running them; their leases decide.

        Studies still ``received`` restart their quiet period: while we were down a sender
        could not reach us, so the silence says nothing about the study being complete
        (queuing it now would give a partial study, and the re-sent rest a second job).
        """
        now = time.time() if now is None else now
        requeue = self._db.exclusive if requeue_processing is None else requeue_processing
        greatest = self._db.dialect.greatest

        def work(tx: Tx) -> None:
            if requeue:
                tx.execute(
                    "UPDATE jobs SET state='queued', updated_at=?, lease_owner=NULL, "
                    "lease_expires_at=NULL WHERE state='processing'",
                    (now,),
                )
                tx.execute(
                    "UPDATE jobs SET lease_owner=NULL, lease_expires_at=NULL "
                    "WHERE state='exporting'"
                )
            tx.execute(
                f"UPDATE jobs SET last_received_at={greatest}(last_received_at, ?), updated_at=? "
                "WHERE state='received'",
                (now, now),
            )

        self._db.run(work)
        return self.list_jobs(UNFINISHED)
