"""Errors of the HTTP API as RFC 9457 problem details (``application/problem+json``).

Every error the API returns is a JSON object with ``type``, ``title``, ``status`` and
``detail`` (RFC 9457 3.1), plus extension members where they help the client
(``checks`` of ``/readyz``, ``instances`` of a refused upload, ``state`` of a job).
``type`` is a relative URI, ``/problems/<slug>`` (RFC 9457 3.1.1 allows URI references;
it resolves against the API's own address, and ``GET /problems/<slug>`` describes it).
Details name what went wrong specifically and never carry a traceback or patient data:
unexpected exceptions are logged server-side and answered with a generic 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# slug -> (title, what it means); titles are fixed per type (RFC 9457 3.1.3).
PROBLEM_TYPES: dict[str, tuple[str, str]] = {
    "unauthorized": (
        "Authentication required",
        "The request has no valid bearer token (Authorization: Bearer <token>).",
    ),
    "api-locked": (
        "HTTP API locked",
        "No API token is configured and dev mode is off, so the API refuses all "
        "requests; set api_token (MINIVESS_API_TOKEN).",
    ),
    "job-not-found": ("Job not found", "No job has this id."),
    "results-not-ready": (
        "Results not ready",
        "The job has no results (yet): it is still receiving, queued or processing, or it failed.",
    ),
    "results-gone": ("Results gone", "The job's result files were removed from the appliance."),
    "unsupported-media-type": (
        "Unsupported media type",
        "The request body's Content-Type is not one this endpoint takes.",
    ),
    "not-acceptable": ("Not acceptable", "No representation matches the Accept header."),
    "bad-request": ("Malformed request", "The request could not be parsed."),
    "nothing-stored": (
        "No instance stored",
        "Every uploaded file was refused; see each file's reason.",
    ),
    "not-ready": ("Not ready", "A readiness check failed; see checks."),
    "internal-error": ("Internal error", "An unexpected error; it is logged on the appliance."),
}


class ProblemError(Exception):
    """Raise in a handler to answer with a problem of a known type."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions


def problem_response(
    status: int,
    slug: str | None,
    detail: str,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """A problem+json response; ``slug`` None = a plain HTTP error (``about:blank``)."""
    if slug is None:
        kind, title = "about:blank", HTTPStatus(status).phrase  # RFC 9457 4.2.1
    else:
        kind, title = f"/problems/{slug}", PROBLEM_TYPES[slug][0]
    body = {"type": kind, "title": title, "status": status, "detail": detail, **extensions}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def on_api_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, ProblemError)
    return problem_response(
        error.status, error.slug, error.detail, error.headers, **error.extensions
    )


async def on_http_exception(request: Request, error: Exception) -> Response:
    """Starlette's own errors (unknown route, wrong method) and BentoML's, as problems."""
    assert isinstance(error, HTTPException)
    if isinstance(error, ProblemHTTPError):
        return await on_api_problem(request, error.problem)
    detail = error.detail
    if error.status_code == 404:
        detail = f"no resource at {request.url.path}"
    elif error.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(error.status_code, None, detail, dict(error.headers or {}))


async def on_disconnect(request: Request, error: Exception) -> Response:
    """The client went away mid-upload: what was stored stays stored; nobody reads this."""
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return problem_response(400, "bad-request", "the client disconnected mid-request")


async def on_unexpected(request: Request, error: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return problem_response(500, "internal-error", "unexpected error; see the appliance log")


class ProblemHTTPError(HTTPException):
    """An :class:`ProblemError` where only HTTPException may pass (BentoML's /readyz)."""

    def __init__(self, problem: ProblemError) -> None:
        super().__init__(problem.status, problem.detail, problem.headers)
        self.problem = problem


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ProblemError: on_api_problem,
    HTTPException: on_http_exception,
    ClientDisconnect: on_disconnect,
    Exception: on_unexpected,
}
