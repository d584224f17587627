"""The console's request handlers (Starlette endpoints; routes in :mod:`service.http.console`).

Pages answer a signed-out browser with a redirect to the sign-in form; pictures and
files (what an ``<img>`` or a download asks for) with 401 problem+json. Every answer
carries a Content-Security-Policy that allows this origin only and no script at all,
so even an injected tag could neither run nor call out of the air gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from operators.preview import PreviewError
from service.http import jobs
from service.http.console import pages
from service.http.console.overview import (
    JobSummary,
    PictureCache,
    pictured_files,
    read_report,
    relative_outputs,
    state_counts,
    summaries,
)
from service.http.console.session import CSRF_FIELD, ConsoleSession
from service.http.health import readiness
from service.http.problems import ProblemError
from service.http.uploads import appliance
from service.job_states import IllegalTransitionError

log = logging.getLogger(__name__)

LISTED_JOBS = 100
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser posts forms with "Origin: null"
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # results are patient data: no copies in shared caches
}
MEDIA_TYPES = {".dcm": "application/dicom", ".json": "application/json"}
NOTICES = {"resent": "Export re-triggered: the exporter sends the results again shortly."}


@dataclass
class Console:
    """What the handlers share: the sign-in and the rendered pictures."""

    session: ConsoleSession
    pictures: PictureCache
    version: str


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303, headers=SECURITY_HEADERS)


def _require_signed_in(request: Request) -> None:
    """For what is not a page: 401 problem+json, not a redirect to a form."""
    if not _console(request).session.signed_in(request):
        raise ProblemError(401, "unauthorized", "sign in to the console first (/console/login)")


def _model(request: Request) -> str:
    summary = getattr(appliance(request).pipeline, "model_summary", None)
    if not callable(summary):
        return "unknown"
    model = summary()
    return f"{model.name} {model.version}"


async def home(request: Request) -> Response:
    """``GET /``: health, queue, dead-lettered exports, the newest jobs."""
    console = _console(request)
    if not console.session.signed_in(request):
        return _to_sign_in()
    service = appliance(request)

    def gather() -> str:
        top = pages.health_section(readiness(service), state_counts(service.journal),
                                   service.journal.count_unfinished(), console.version,
                                   _model(request))  # fmt: skip
        dead = [JobSummary(j, None) for j in service.journal.list_jobs(("dead_letter",))]
        listed = summaries(service.journal, LISTED_JOBS)
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return pages.home_page(top, listed, dead, console.session.csrf_token(request), notice)

    return _html(await run_in_threadpool(gather))


async def login_form(request: Request) -> Response:
    """``GET /console/login``."""
    session = _console(request).session
    if session.signed_in(request):
        return RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    return _html(pages.login_page(None, session.locked), 403 if session.locked else 200)


async def login(request: Request) -> Response:
    """``POST /console/login`` (form field ``token``): the session cookie, or 401."""
    session = _console(request).session
    if session.locked:
        return _html(pages.login_page(None, locked=True), 403)
    async with request.form() as form:
        offered = form.get("token")
    response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    if (
        isinstance(offered, str)
        and session.same_origin(request)
        and session.sign_in(offered, response)
    ):
        log.info("console: signed in from %s", request.client.host if request.client else "?")
        return response
    log.warning("console: sign-in refused (wrong token or another origin)")
    return _html(pages.login_page("That is not the appliance's API token.", False), 401)


async def _checked_form(request: Request) -> None:
    """A state-changing POST: signed in, from this origin, with this session's CSRF token."""
    session = _console(request).session
    if not session.signed_in(request):
        raise ProblemError(401, "unauthorized", "sign in to the console first (/console/login)")
    async with request.form() as form:
        offered = form.get(CSRF_FIELD)
    if not isinstance(offered, str) or not session.csrf_ok(request, offered):
        raise ProblemError(403, "bad-request", "the form is not from this console session")


async def logout(request: Request) -> Response:
    """``POST /console/logout``."""
    await _checked_form(request)
    response = _to_sign_in()
    _console(request).session.sign_out(response)
    return response


def _series_sections(console: Console, summary: JobSummary) -> str:
    """Each series of the run, with its pictures rendered (or the reason they are not)."""
    sections = []
    for index, series in enumerate(summary.report.series if summary.report else []):
        files = pictured_files(summary.job, series) if series.status == "done" else None
        pictures: list[str] | str = "the series has no SEG and uncertainty map"
        if files is not None:
            try:
                pictures = list(console.pictures.pictures(summary.job.job_id, *files))
            except (PreviewError, OSError) as error:
                pictures = str(error)
        sections.append(pages.series_section(summary.job.job_id, index, series, pictures))
    return "".join(sections)


async def job_page(request: Request) -> Response:
    """``GET /console/jobs/{job_id}``: the study page."""
    console = _console(request)
    if not console.session.signed_in(request):
        return _to_sign_in()
    try:
        job = await jobs.find_job(request)
    except ProblemError as problem:
        return _html(
            pages.error_page(404, problem.detail, console.session.csrf_token(request)), 404
        )

    def gather() -> str:
        summary = JobSummary(job, read_report(job))
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return pages.job_page(summary, _series_sections(console, summary),
                              list(relative_outputs(job)), console.session.csrf_token(request),
                              notice)  # fmt: skip

    return _html(await run_in_threadpool(gather))


async def picture(request: Request) -> Response:
    """``GET /console/jobs/{job_id}/series/{index}/{name}.png``."""
    _require_signed_in(request)
    job = await jobs.find_job(request)
    report = await run_in_threadpool(read_report, job)
    index, name = int(request.path_params["index"]), str(request.path_params["name"])
    if report is None or not 0 <= index < len(report.series):
        raise ProblemError(404, "results-gone", f"job {job.job_id} has no series {index + 1}")
    files = pictured_files(job, report.series[index])
    if files is None:
        raise ProblemError(404, "results-gone", "the series has no SEG and uncertainty map")
    try:
        rendered = await run_in_threadpool(_console(request).pictures.pictures, job.job_id, *files)
    except (PreviewError, OSError) as error:
        raise ProblemError(410, "results-gone", f"cannot picture the results: {error}") from None
    if name not in rendered:
        raise ProblemError(
            404, "results-gone", f"no picture {name[:32]} (one of {', '.join(rendered)})"
        )
    return Response(rendered[name], media_type="image/png", headers=SECURITY_HEADERS)


async def result_file(request: Request) -> Response:
    """``GET /console/jobs/{job_id}/files/{path}``: one result file, as listed by the job."""
    _require_signed_in(request)
    job = await jobs.find_job(request)
    wanted = str(request.path_params["path"])
    path = relative_outputs(job).get(wanted)
    if path is None:
        raise ProblemError(404, "results-gone", f"job {job.job_id} has no result {wanted[:128]}")
    if not path.is_file():
        raise ProblemError(410, "results-gone", f"{wanted[:128]} is no longer on the appliance")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                        filename=wanted.replace("/", "-"), headers=SECURITY_HEADERS)  # fmt: skip


async def results_zip(request: Request) -> Response:
    """``GET /console/jobs/{job_id}/results.zip``: the API's result zip, for a browser."""
    _require_signed_in(request)
    return await jobs.job_result(request)


async def retry_export(request: Request) -> Response:
    """``POST /console/jobs/{job_id}/retry-export``: ``python -m service retry-export``."""
    await _checked_form(request)
    job_id = str(request.path_params["job_id"])
    journal = appliance(request).journal
    try:
        await run_in_threadpool(journal.retry_export, job_id)
    except KeyError:
        raise ProblemError(404, "job-not-found", f"no job {job_id[:64]}") from None
    except IllegalTransitionError as error:
        csrf = _console(request).session.csrf_token(request)
        return _html(pages.error_page(409, str(error), csrf), 409)
    log.info("job %s: export re-triggered from the console", job_id)
    return RedirectResponse(f"{pages.job_href(job_id)}?notice=resent", status_code=303,
                            headers=SECURITY_HEADERS)  # fmt: skip
