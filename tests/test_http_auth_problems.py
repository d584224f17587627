"""The HTTP API's pure logic, called directly (no server): bearer-token authentication
(an ASGI middleware, driven here with a fake request) and problem+json responses."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.http import auth
from service.http.auth import REALM, BearerAuth
from service.http.problems import (
    PROBLEM_JSON,
    PROBLEM_TYPES,
    on_http_exception,
    on_unexpected,
    problem_response,
)

# ------------------------------------------------------------------- bearer auth


def _call(
    middleware: BearerAuth, path: str, authorization: bytes | None
) -> tuple[int, dict[str, Any]]:
    """Send one request through the middleware; the status and what it answered with."""
    sent_headers = [(b"authorization", authorization)] if authorization is not None else []
    scope = {"type": "http", "method": "GET", "path": path, "headers": sent_headers}
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    start = sent[0]
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    headers = dict(start["headers"])
    problem = headers.get(b"content-type") == PROBLEM_JSON.encode()
    answer = {"headers": headers, "body": json.loads(payload) if problem else payload}
    return start["status"], answer


async def _inner(scope: Any, receive: Any, send: Any) -> None:
    await Response("inner", status_code=299)(scope, receive, send)


GUARD = BearerAuth(_inner, "s3cret token", enabled=True)


@pytest.mark.requirement("SRS-047")
@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "missing Authorization"),
        (b"", "missing Authorization"),
        (b"Basic dXNlcjpwYXNz", "Bearer scheme"),
        (b"Bearer", "Bearer scheme"),
        (b"Bearer    ", "Bearer scheme"),
        (b"Bearer s3cret", "not valid"),  # a prefix of the token
        (b"Bearer s3cret token2", "not valid"),
        (b"Bearer S3CRET TOKEN", "not valid"),  # tokens are case-sensitive
    ],
)
def test_requests_without_the_right_token_are_refused(
    authorization: bytes | None, detail: str
) -> None:
    status, answer = _call(GUARD, "/v1/jobs/x", authorization)
    assert status == 401 and detail in answer["body"]["detail"]
    assert answer["body"]["type"] == "/problems/unauthorized"
    assert answer["headers"][b"content-type"] == PROBLEM_JSON.encode()
    challenge = answer["headers"][b"www-authenticate"].decode()
    assert challenge.startswith(REALM)
    assert ('error="invalid_token"' in challenge) == (detail == "not valid")  # RFC 6750 3.1


@pytest.mark.requirement("SRS-047")
@pytest.mark.parametrize("header", [b"Bearer s3cret token", b"bearer s3cret token"])
def test_the_right_token_passes(header: bytes) -> None:
    assert _call(GUARD, "/dicomweb/studies", header)[0] == 299


@pytest.mark.requirement("SRS-047", "SRS-046")
@pytest.mark.parametrize(
    ("path", "protected"),
    [("/v1/studies", True), ("/v1", True), ("/dicomweb", True), ("/dicomweb/studies", True),
     ("/livez", False), ("/readyz", False), ("/metrics", False), ("/v1x", False)],
)  # fmt: skip
def test_probes_and_metrics_need_no_token(path: str, protected: bool) -> None:
    assert _call(GUARD, path, None)[0] == (401 if protected else 299)


@pytest.mark.requirement("SRS-047")
def test_without_a_configured_token_the_api_is_locked_not_open() -> None:
    locked = BearerAuth(_inner, None, enabled=True)
    status, answer = _call(locked, "/v1/studies", b"Bearer anything")
    assert status == 403 and answer["body"]["type"] == "/problems/api-locked"
    assert _call(BearerAuth(_inner, None, enabled=False), "/v1/studies", None)[0] == 299  # dev


@pytest.mark.requirement("SRS-047")
def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert _call(GUARD, "/v1/jobs", b"Bearer x")[0] == 401
    assert _call(GUARD, "/v1/jobs", b"Bearer s3cret token")[0] == 299
    # Fixed-length digests, never the token itself: not even its length leaks.
    assert [(len(a), len(b)) for a, b in compared] == [(32, 32), (32, 32)]
    assert all(b"s3cret" not in a + b for a, b in compared)


# ------------------------------------------------------------------ problem details


def _problem(response: Response) -> dict[str, Any]:
    assert response.media_type == PROBLEM_JSON
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = json.loads(bytes(response.body))
    return body


@pytest.mark.requirement("SRS-045")
def test_a_problem_has_the_rfc_9457_members_and_extensions() -> None:
    response = problem_response(
        409, "nothing-stored", "3 files refused", {"Retry-After": "5"}, instances=[{"a": 1}]
    )
    assert response.status_code == 409 and response.headers["retry-after"] == "5"
    assert _problem(response) == {
        "type": "/problems/nothing-stored",
        "title": PROBLEM_TYPES["nothing-stored"][0],
        "status": 409,
        "detail": "3 files refused",
        "instances": [{"a": 1}],
    }


@pytest.mark.requirement("SRS-045")
def test_a_plain_http_error_is_about_blank_with_the_status_phrase() -> None:
    body = _problem(problem_response(404, None, "no such job"))
    assert (body["type"], body["title"], body["status"]) == ("about:blank", "Not Found", 404)


def test_every_problem_type_has_a_title_and_a_description() -> None:
    assert all(title and meaning for title, meaning in PROBLEM_TYPES.values())
    with pytest.raises(KeyError):
        problem_response(400, "no-such-problem", "x")  # a typo must not ship silently


def _request(method: str, path: str) -> Request:
    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    return Request({**scope, "server": ("appliance", 3000), "scheme": "http"})


@pytest.mark.requirement("SRS-045")
@pytest.mark.parametrize(
    ("status", "method", "detail"),
    [(404, "GET", "no resource at /v2/x"), (405, "DELETE", "DELETE is not allowed on /v2/x")],
)
def test_framework_errors_become_problems(status: int, method: str, detail: str) -> None:
    error = HTTPException(status, "starlette text", {"Allow": "GET"})
    response = asyncio.run(on_http_exception(_request(method, "/v2/x"), error))
    body = _problem(response)
    assert (body["type"], body["status"], body["detail"]) == ("about:blank", status, detail)
    assert response.headers["allow"] == "GET"


@pytest.mark.requirement("SRS-045")
def test_an_unexpected_error_leaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    secret = RuntimeError("Traceback: PatientName=DOE^JANE")
    response = asyncio.run(on_unexpected(_request("POST", "/v1/studies"), secret))
    body = _problem(response)
    assert response.status_code == 500 and body["type"] == "/problems/internal-error"
    assert "DOE" not in bytes(response.body).decode()
    assert any(record.exc_info for record in caplog.records)  # logged server-side instead
