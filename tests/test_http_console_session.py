"""The console's sign-in (service/http/console/session.py) on real Starlette requests and
responses, without a server: cookie attributes, expiry, tampering, CSRF and origin, dev
mode and the locked console."""

from __future__ import annotations

import time

import pytest
from starlette.requests import Request
from starlette.responses import Response

from service.http.console.session import COOKIE, SESSION_S, ConsoleSession

TOKEN = "session-test-token-0123456789"
HOST = "127.0.0.1:3000"


def request(cookie: str | None = None, origin: str | None = None) -> Request:
    headers = [(b"host", HOST.encode())]
    if cookie is not None:
        headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers,
             "scheme": "http", "server": ("127.0.0.1", 3000), "query_string": b""}  # fmt: skip
    return Request(scope)


def signed_in_cookie(session: ConsoleSession, now: float | None = None) -> str:
    response = Response()
    assert session.sign_in(TOKEN, response, now)
    header = response.headers["set-cookie"]
    return header.split(";")[0].split("=", 1)[1]


@pytest.mark.requirement("SRS-047", "SRS-086")
def test_the_token_signs_in_with_a_cookie_that_is_not_the_token() -> None:
    session = ConsoleSession(TOKEN, enabled=True, secure=True)
    response = Response()
    assert not session.sign_in("wrong", response) and "set-cookie" not in response.headers
    assert not session.sign_in("", response)
    assert session.sign_in(f"  {TOKEN} ", response)  # as the header: surrounding blanks
    header = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Secure", "Path=/", f"Max-Age={SESSION_S}"):
        assert attribute in header, header
    assert TOKEN not in header
    assert session.signed_in(request(signed_in_cookie(session)))
    assert not session.signed_in(request())


@pytest.mark.requirement("SRS-047", "SRS-086")
def test_expired_tampered_or_foreign_cookies_are_refused() -> None:
    session = ConsoleSession(TOKEN, enabled=True, secure=False)
    cookie = signed_in_cookie(session)
    expiry, signature = cookie.split(".")
    assert not session.signed_in(request(cookie), now=time.time() + SESSION_S + 1)
    assert not session.signed_in(request(f"{int(expiry) + 3600}.{signature}"))  # longer
    assert not session.signed_in(request(f"{expiry}.{'0' * 64}"))
    assert not session.signed_in(request("garbage"))
    rotated = ConsoleSession("another-token-0123456789", enabled=True, secure=False)
    assert not rotated.signed_in(request(cookie))  # a new token signs everyone out


@pytest.mark.requirement("SRS-047", "SRS-086")
def test_csrf_token_is_bound_to_the_session_and_the_origin() -> None:
    session = ConsoleSession(TOKEN, enabled=True, secure=False)
    mine, theirs = signed_in_cookie(session), signed_in_cookie(session, time.time() + 5)
    token = session.csrf_token(request(mine))
    assert session.csrf_ok(request(mine), token)
    assert session.csrf_ok(request(mine, origin=f"http://{HOST}"), token)
    assert not session.csrf_ok(request(mine, origin="http://evil.example"), token)
    assert not session.csrf_ok(request(mine, origin="null"), token)
    assert not session.csrf_ok(request(theirs), token)
    assert not session.csrf_ok(request(mine), "")


@pytest.mark.requirement("SRS-047", "SRS-086")
def test_dev_mode_is_open_and_no_token_is_locked() -> None:
    dev = ConsoleSession(None, enabled=False, secure=False)
    assert dev.signed_in(request()) and not dev.locked
    assert dev.csrf_ok(request(), dev.csrf_token(request()))
    locked = ConsoleSession(None, enabled=True, secure=False)
    assert locked.locked and not locked.signed_in(request())
    assert not locked.sign_in("", Response()) and not locked.sign_in("anything", Response())
