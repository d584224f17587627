"""JSON bodies of the ``/v1`` API (pydantic: the responses and the OpenAPI schemas).

A job as the API shows it carries no patient data: ids, states, times, counts, the
result file names and the pipeline's error reason/message (which name no patient).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from service.journal import Job, JobState

# Results exist once the pipeline wrote them (export may still be pending or failed).
RESULT_STATES: tuple[JobState, ...] = ("exporting", "done", "dead_letter")


def iso(timestamp: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds, e.g. 2025-01-31T12:00:00.000Z."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


class JobLinks(BaseModel):
    self: str
    result: str | None = Field(description="present once results can be fetched")


class JobView(BaseModel):
    """``GET /v1/jobs/{job_id}``."""

    job_id: str
    state: JobState
    source: str = Field(description="how the study arrived: dimse (C-STORE) or http")
    correlation_id: str = Field(description="trace id in the report, traces and audit log")
    created_at: str | None
    first_received_at: str | None
    last_received_at: str | None
    updated_at: str | None
    finished_at: str | None
    instances: int
    attempts: int = Field(description="pipeline runs so far")
    export_attempts: int
    exported_to: list[str] = Field(description="export destinations that took the results")
    outputs: list[str] = Field(description="result file names (SEG, uncertainty map, SR)")
    error: str | None
    error_reason: str | None
    links: JobLinks

    @classmethod
    def of(cls, job: Job) -> JobView:
        base = f"/v1/jobs/{job.job_id}"
        ready = job.state in RESULT_STATES and bool(job.outputs)
        return cls(
            job_id=job.job_id,
            state=job.state,
            source=job.source,
            correlation_id=job.correlation_id,
            created_at=iso(job.created_at),
            first_received_at=iso(job.first_received_at),
            last_received_at=iso(job.last_received_at),
            updated_at=iso(job.updated_at),
            finished_at=iso(job.finished_at),
            instances=job.instances,
            attempts=job.attempts,
            export_attempts=job.export_attempts,
            exported_to=job.delivered,
            outputs=[Path(path).name for path in job.outputs],
            error=job.error,
            error_reason=job.error_reason,
            links=JobLinks(self=base, result=f"{base}/result" if ready else None),
        )


class InstanceOutcome(BaseModel):
    file: str = Field(description="the file name as uploaded (zip members: zip/member)")
    stored: bool
    status: str = Field(description="DICOM Storage status, e.g. 0x0000, 0xA900, 0xC210")
    reason: str = Field(description="stored, duplicate, or why it was refused")
    detail: str | None
    sop_instance_uid: str | None
    job_id: str | None


class JobRef(BaseModel):
    job_id: str
    study_instance_uid: str
    href: str


class UploadResponse(BaseModel):
    """``POST /v1/studies`` (202): one job per study, one outcome per file."""

    jobs: list[JobRef]
    stored: int
    refused: int
    instances: list[InstanceOutcome]


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
