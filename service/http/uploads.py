"""What became of each uploaded file or part, for the upload API (``jobs``) and STOW-RS.

:class:`Outcome` is one file's (or part's) fate. :func:`store` hands an instance to
``InstanceIngest.accept``, with the same checks, spool (fsync before success), journal and
metrics as the DICOM gateway (``interface="http"``), so an instance stored over HTTP joins
its study's open job exactly as one received by C-STORE would; :func:`refused` records
one refused before it gets there. The status codes are the Storage Service ones (PS3.4
B.2.3) that STOW-RS reuses as Failure Reasons (PS3.18 Annex I.2.2). Blocking work
(parsing, fsync, SQLite) runs in the thread pool, never on the event loop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import pydicom
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from service.spool import is_uid
from service.storage_status import TEMPORARY, IngestResult, Reason, record_refusal, refusal

if TYPE_CHECKING:
    from service.app import Service

INTERFACE = "http"


def appliance(request: Request) -> Service:
    """The appliance Service behind the app that serves ``request``."""
    return cast("Service", request.app.state.appliance)


@dataclass(frozen=True)
class Outcome:
    """What became of one uploaded file or part (``name`` as the client named it)."""

    name: str
    result: IngestResult
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_uid: str | None = None
    job_id: str | None = None

    @property
    def stored(self) -> bool:
        return self.result.ok

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.name,
            "stored": self.stored,
            "status": f"0x{self.result.status:04X}",
            "reason": self.result.reason,
            "detail": self.result.comment or None,
            "sop_instance_uid": self.sop_instance_uid,
            "job_id": self.job_id,
        }


def peek(data: bytes) -> tuple[str | None, str | None, str | None]:
    """(SOP Class, SOP Instance, Study Instance) UIDs when readable and well-formed."""
    try:
        ds = pydicom.dcmread(
            io.BytesIO(data),
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"],
        )
        uids = [
            str(ds.get(key, "") or "")
            for key in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")
        ]
    except Exception:  # garbage: InstanceIngest will say exactly why
        return None, None, None
    sop_class, sop_instance, study = (uid if is_uid(uid) else None for uid in uids)
    return sop_class, sop_instance, study


def refused(
    service: Service,
    name: str,
    reason: Reason,
    comment: str,
    uids: tuple[str | None, str | None, str | None] = (None, None, None),
) -> Outcome:
    """A file or part refused before it reaches ``InstanceIngest`` (a zip that does not open, a
    part too large, ...): counted and logged as every refusal is (``record_refusal``).
    ``uids``: (SOP Class, SOP Instance, Study Instance) where they could be read."""
    result = refusal(reason, comment)
    record_refusal(service.metrics, INTERFACE, result, uids[1])
    return Outcome(name, result, *uids)


def _store(service: Service, data: bytes, name: str, target_study: str | None) -> Outcome:
    sop_class, sop_instance, study = uids = peek(data)
    if target_study is not None and study is not None and study != target_study:
        # PS3.18 10.5: an instance outside the target study is not stored.
        return refused(service, name, Reason.STUDY_MISMATCH,
                       "Study Instance UID differs from the target study", uids)  # fmt: skip
    result = service.ingest.accept(data, interface=INTERFACE)
    job_id = result.job_id
    if result.ok and job_id is None and result.study_uid:
        job_id = service.journal.unfinished_job_of(result.study_uid)
    return Outcome(
        name, result, sop_class, result.sop_uid or sop_instance, result.study_uid or study, job_id
    )


async def store(
    service: Service, data: bytes, name: str, target_study: str | None = None
) -> Outcome:
    """Check, spool and journal one Part 10 instance; never raises for bad input."""
    return await run_in_threadpool(_store, service, data, name, target_study)


def jobs_of(outcomes: list[Outcome]) -> dict[str, str]:
    """Job id -> Study Instance UID of the stored outcomes, in upload order."""
    found: dict[str, str] = {}
    for outcome in outcomes:
        if outcome.stored and outcome.job_id and outcome.study_uid:
            found.setdefault(outcome.job_id, outcome.study_uid)
    return found


def out_of_resources(outcomes: list[Outcome]) -> bool:
    """Every refusal is a temporary 0xA7xx (disk, spool, too many studies): a retry later
    may succeed (an instance too large to take is 0xA700 too, but never will)."""
    failed = [o for o in outcomes if not o.stored]
    return bool(failed) and all(o.result.reason in TEMPORARY for o in failed)
