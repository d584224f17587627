"""The journal file's tables and the records read from them.

``jobs`` holds one row per job (its state is one of :data:`service.job_states.JobState`);
``instances`` maps each spooled SOP Instance UID to its study and job and is what makes a
re-sent instance a duplicate. :data:`SCHEMA` is applied on every open and is idempotent
(``IF NOT EXISTS``; the ``DROP INDEX`` retires the older ``jobs_study`` index, replaced by
``jobs_study_created``). :func:`connect` opens a connection the way the journal needs it;
:func:`migrate` adds the columns of later releases to a journal file written before them
(:data:`ADDED_COLUMNS`: the routing decision of :mod:`service.routing`).

Holds DICOM UIDs (not identifying on their own) and never patient names or IDs.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from pydantic import BaseModel

from service.job_states import JobState

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    source TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    instances INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    export_attempts INTEGER NOT NULL DEFAULT 0,
    next_export_at REAL,
    delivered TEXT NOT NULL DEFAULT '[]',
    output_dir TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    error_reason TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
DROP INDEX IF EXISTS jobs_study;
CREATE INDEX IF NOT EXISTS jobs_study_created ON jobs(study_uid, created_at);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    job_id TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
"""


# Columns added after the first release, with their definitions: added by migrate() to an
# older journal file (SQLite's ALTER TABLE ADD COLUMN; a new file gets them the same way).
ADDED_COLUMNS = {
    # Claim order: higher first (service.routing.PRIORITIES: stat 2, normal 1, off-peak 0).
    "priority": "INTEGER NOT NULL DEFAULT 1",
    # Not claimed before this time (an off-peak study waits for its window); NULL = now.
    "not_before": "REAL",
    # JSON list of channel names the results go to; NULL = every default channel.
    "destinations": "TEXT",
    # The routing rule that decided (NULL: no rule file, or the default).
    "rule": "TEXT",
}


def migrate(db: sqlite3.Connection) -> None:
    """Add :data:`ADDED_COLUMNS` missing from ``jobs`` (idempotent)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for name, definition in ADDED_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")


class Job(BaseModel):
    job_id: str
    study_uid: str
    state: JobState
    source: str
    correlation_id: str
    created_at: float
    first_received_at: float
    last_received_at: float
    updated_at: float
    finished_at: float | None
    instances: int
    attempts: int
    export_attempts: int
    next_export_at: float | None
    delivered: list[str]
    output_dir: str | None
    outputs: list[str]
    error: str | None
    error_reason: str | None
    priority: int = 1
    not_before: float | None = None
    destinations: list[str] | None = None
    rule: str | None = None


class Registered(BaseModel):
    """What :meth:`service.journal.Journal.register_instance` did."""

    job_id: str | None
    duplicate: bool
    new_job: bool


def job_from_row(row: sqlite3.Row) -> Job:
    """A ``jobs`` row as a :class:`Job` (its JSON list columns decoded)."""
    data = dict(row)
    data["delivered"] = json.loads(data["delivered"])
    data["outputs"] = json.loads(data["outputs"])
    if data.get("destinations") is not None:
        data["destinations"] = json.loads(data["destinations"])
    return Job.model_validate(data)


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection in autocommit mode (the journal opens its own transactions), WAL,
    ``synchronous`` as given (``FULL`` or ``NORMAL``), waiting up to 10 s for a lock."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=10000")
    return db
