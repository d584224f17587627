"""The journal file's tables and the records read from them.

``jobs`` holds one row per job (its state is one of :data:`service.job_states.JobState`);
``instances`` maps each spooled SOP Instance UID to its study and job and is what makes a
re-sent instance a duplicate. :data:`SCHEMA` is applied on every open and is idempotent
(``IF NOT EXISTS``; the ``DROP INDEX`` retires the older ``jobs_study`` index, replaced by
``jobs_study_created``) and is the same text for SQLite and PostgreSQL (``DOUBLE
PRECISION`` and ``BIGINT`` have SQLite's REAL and INTEGER affinity; a file written with
the older REAL/INTEGER names reads the same). :func:`service.journal_db.init_schema` adds
the columns of later releases to a journal written before them (:data:`ADDED_COLUMNS`:
the routing decision of :mod:`service.routing`, the worker leases).

Holds DICOM UIDs (not identifying on their own) and never patient names or IDs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from service.job_states import JobState

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    source TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    first_received_at DOUBLE PRECISION NOT NULL,
    last_received_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    instances BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    export_attempts BIGINT NOT NULL DEFAULT 0,
    next_export_at DOUBLE PRECISION,
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
    size BIGINT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
"""


# Columns added after the first release, with their definitions: added by init_schema() to an
# older journal (ALTER TABLE ADD COLUMN; a new journal gets them the same way).
ADDED_COLUMNS = {
    # Claim order: higher first (service.routing.PRIORITIES: stat 2, normal 1, off-peak 0).
    "priority": "INTEGER NOT NULL DEFAULT 1",
    # Not claimed before this time (an off-peak study waits for its window); NULL = now.
    "not_before": "DOUBLE PRECISION",  # (REAL in PostgreSQL would be 4 bytes)
    # JSON list of channel names the results go to; NULL = every default channel.
    "destinations": "TEXT",
    # The routing rule that decided (NULL: no rule file, or the default).
    "rule": "TEXT",
    # Who holds the job (a worker while processing, an exporter while sending) and until
    # when: a holder that dies stops renewing, and the job is taken again once it expires.
    "lease_owner": "TEXT",
    "lease_expires_at": "DOUBLE PRECISION",
}


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
    lease_owner: str | None = None
    lease_expires_at: float | None = None


class Registered(BaseModel):
    """What :meth:`service.journal.Journal.register_instance` did."""

    job_id: str | None
    duplicate: bool
    new_job: bool


def job_from_row(row: Mapping[str, Any]) -> Job:
    """A ``jobs`` row as a :class:`Job` (its JSON list columns decoded)."""
    data = dict(row)
    data["delivered"] = json.loads(data["delivered"])
    data["outputs"] = json.loads(data["outputs"])
    if data.get("destinations") is not None:
        data["destinations"] = json.loads(data["destinations"])
    return Job.model_validate(data)
