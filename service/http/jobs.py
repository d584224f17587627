"""The job API: upload a study, follow its job, fetch its results.

* ``POST /v1/studies``: ``multipart/form-data`` with any number of file fields, each a
  DICOM Part 10 file or a zip of them (or a bare ``application/zip`` body). Every
  instance goes through ``InstanceIngest.accept`` like a C-STORE; 202 with the job of each
  study and each file's outcome (its DICOM status and specific reason when refused); 422 when
  nothing was stored (503 + Retry-After when only for lack of resources). A study still
  becomes a job after the quiet period, exactly as over DIMSE.
* ``GET /v1/jobs/{job_id}``: the job (:class:`service.http.models.JobView`).
* ``GET /v1/jobs/{job_id}/result``: the results once written (job ``exporting``,
  ``done`` or ``dead_letter``): by default ``application/zip`` (SEG, uncertainty map,
  SR and ``report.json``); with ``Accept: multipart/related; type="application/dicom"``
  the DICOM results as parts, as a DICOMweb client expects (PS3.18 8.6.1.2). 409 while
  there are none (with the job's state), 404 for an unknown job.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import IO

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from service.http.models import RESULT_STATES, JobRef, JobView, UploadResponse
from service.http.multipart import MediaType, negotiate, related_stream
from service.http.problems import ProblemError
from service.http.uploads import Outcome, appliance, jobs_of, out_of_resources, refused, store
from service.journal import Job
from service.storage_status import Reason

ZIP = "application/zip"
RELATED_DICOM = 'multipart/related; type="application/dicom"'
MAX_FILES = 100_000  # a large CT study has a few thousand slices
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
# CRC mismatch, truncated, encrypted, unknown compression method, corrupt deflate stream
ZIP_MEMBER_ERRORS = (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError,
                     zlib.error)  # fmt: skip
SKIPPED_MEMBERS = ("__MACOSX/", "DICOMDIR")  # macOS resource forks; the media index


class _DiskSpooledForm(MultiPartParser):
    """Starlette's form parser, spilling each file to disk past 64 KiB instead of 1 MiB:
    a study's slices (~0.5 MiB each) would otherwise all sit in memory at once."""

    spool_max_size = 2**16


def _skip(member: zipfile.ZipInfo) -> bool:
    base = member.filename.rsplit("/", 1)[-1]
    return (
        member.is_dir()
        or member.filename.startswith(SKIPPED_MEMBERS[0])
        or base.upper() == SKIPPED_MEMBERS[1]
        or base.startswith(".")
    )


async def _from_zip(request: Request, handle: IO[bytes], name: str) -> list[Outcome]:
    service = appliance(request)
    limit = service.settings.max_instance_bytes
    try:
        archive = await run_in_threadpool(zipfile.ZipFile, handle)
    except (zipfile.BadZipFile, OSError, EOFError):
        return [refused(service, name, Reason.BAD_ZIP, "Not a readable zip archive")]
    outcomes: list[Outcome] = []
    with archive:
        for member in archive.infolist():
            label = f"{name}/{member.filename}"
            if _skip(member):
                continue
            if member.file_size > limit:  # the header's size; read() enforces it too
                outcomes.append(refused(service, label, Reason.TOO_LARGE, f"Over {limit} B"))
                continue
            try:
                data = await run_in_threadpool(archive.read, member)
            except ZIP_MEMBER_ERRORS:
                outcomes.append(refused(service, label, Reason.BAD_ZIP_MEMBER,
                                        "Zip member cannot be extracted"))  # fmt: skip
                continue
            outcomes.append(await store(service, data, label))
    return outcomes


async def _from_file(request: Request, handle: IO[bytes], name: str) -> list[Outcome]:
    head = await run_in_threadpool(handle.read, 4)
    await run_in_threadpool(handle.seek, 0)
    if head in ZIP_SIGNATURES:  # never the start of Part 10 (preamble) or a raw data set
        return await _from_zip(request, handle, name)
    service = appliance(request)
    limit = service.settings.max_instance_bytes
    data = await run_in_threadpool(handle.read, limit + 1)
    if len(data) > limit:
        return [refused(service, name, Reason.TOO_LARGE, f"Instance over {limit} bytes")]
    return [await store(service, data, name)]


async def upload(request: Request) -> Response:
    """``POST /v1/studies``."""
    media = MediaType.parse(request.headers.get("content-type"))
    outcomes: list[Outcome] = []
    if media.essence == "multipart/form-data":
        try:
            parser = _DiskSpooledForm(request.headers, request.stream(), max_files=MAX_FILES,
                                      max_fields=100)  # fmt: skip
            form = await parser.parse()
        except MultiPartException as error:
            raise ProblemError(400, "bad-request", f"the form cannot be read: {error}") from None
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if not files:
                raise ProblemError(400, "bad-request", "the form has no file fields")
            for number, file in enumerate(files, 1):
                name = file.filename or f"file {number}"
                outcomes += await _from_file(request, file.file, name)
        finally:
            await form.close()
    elif media.essence in (ZIP, "application/x-zip-compressed"):
        with tempfile.SpooledTemporaryFile(max_size=2**24) as spooled:
            async for chunk in request.stream():
                await run_in_threadpool(spooled.write, chunk)
            await run_in_threadpool(spooled.seek, 0)
            outcomes = await _from_zip(request, spooled, "upload.zip")
    else:
        raise ProblemError(
            415,
            "unsupported-media-type",
            "upload DICOM files as multipart/"
            f"form-data or one {ZIP}, not {media.essence or 'no Content-Type'}",
        )
    return _upload_response(outcomes)


def _upload_response(outcomes: list[Outcome]) -> Response:
    if not outcomes:
        raise ProblemError(422, "nothing-stored", "the upload holds no DICOM files")
    stored = sum(o.stored for o in outcomes)
    instances = [o.as_json() for o in outcomes]
    if not stored:
        refusals = sorted({o.result.reason for o in outcomes})
        detail = f"none of {len(outcomes)} files was stored ({', '.join(refusals)})"
        if out_of_resources(outcomes):
            raise ProblemError(
                503, "nothing-stored", detail, {"Retry-After": "60"}, instances=instances
            )
        raise ProblemError(422, "nothing-stored", detail, instances=instances)
    jobs = [
        JobRef(job_id=job, study_instance_uid=study, href=f"/v1/jobs/{job}")
        for job, study in jobs_of(outcomes).items()
    ]
    body = UploadResponse(
        jobs=jobs, stored=stored, refused=len(outcomes) - stored, instances=instances
    )
    headers = {"Location": jobs[0].href} if len(jobs) == 1 else {}
    return JSONResponse(body.model_dump(), status_code=202, headers=headers)


async def find_job(request: Request) -> Job:
    """The job named by the ``job_id`` path parameter, or 404 job-not-found."""
    job_id = str(request.path_params["job_id"])
    job = await run_in_threadpool(appliance(request).journal.get, job_id)
    if job is None:
        raise ProblemError(404, "job-not-found", f"no job {job_id[:64]}")
    return job


async def job_status(request: Request) -> Response:
    """``GET /v1/jobs/{job_id}``."""
    return JSONResponse(JobView.of(await find_job(request)).model_dump())


def _zip_results(job: Job, files: list[Path]) -> str:
    """Write the results (and report.json) into a temporary zip; its path."""
    handle, name = tempfile.mkstemp(prefix="minivess-result-", suffix=".zip")
    with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as out:
        for path in files:
            out.write(path, path.name)
        report = Path(job.output_dir or "") / "report.json"
        if job.output_dir and report.is_file():
            out.write(report, "report.json")
    return name


async def job_result(request: Request) -> Response:
    """``GET /v1/jobs/{job_id}/result``."""
    job = await find_job(request)
    if job.state not in RESULT_STATES or not job.outputs:
        if job.state == "failed":
            detail = f"job failed ({job.error_reason}): it has no results"
            raise ProblemError(409, "results-not-ready", detail, state=job.state)
        raise ProblemError(
            409,
            "results-not-ready",
            f"job is {job.state}: results come once it is processed",
            {"Retry-After": "5"},
            state=job.state,
        )
    offer = negotiate(request.headers.get("accept"), [ZIP, RELATED_DICOM])
    if offer is None:
        raise ProblemError(406, "not-acceptable", f"results are {ZIP} or {RELATED_DICOM}")
    files = [Path(path) for path in job.outputs]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise ProblemError(
            410, "results-gone", f"result files no longer on the appliance: {', '.join(missing)}"
        )
    if offer == RELATED_DICOM:
        body, media_type = related_stream(files, "application/dicom")
        return StreamingResponse(body, media_type=media_type)
    archive = await run_in_threadpool(_zip_results, job, files)
    return FileResponse(
        archive,
        media_type=ZIP,
        filename=f"minivess-{job.job_id}.zip",
        background=BackgroundTask(os.unlink, archive),
    )
