"""Bearer-token authentication of the HTTP API (RFC 6750), on unless in dev mode.

Protected: everything under ``/v1/`` and ``/dicomweb/`` (uploads, jobs, results). Open:
``/livez``, ``/readyz``, ``/metrics`` (probes and Prometheus must not need the token),
the OpenAPI document and its page. Without ``api_token`` outside dev mode the API is
locked (403 for every request) rather than open: failing closed is the safe default.

The web console (:mod:`service.http.console`) signs people in with the same token
(:func:`token_matches`) and keeps them signed in with a cookie of its own.

The token is compared in constant time (``hmac.compare_digest`` over SHA-256 digests,
so not even its length leaks through timing).
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.http.problems import problem_response

PROTECTED_PREFIXES = ("/v1/", "/dicomweb/")
REALM = 'Bearer realm="minivess"'


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def token_matches(expected: str | None, offered: str) -> bool:
    """Whether ``offered`` is the configured token (never when none is configured),
    compared in constant time like the Authorization header (the web console's login)."""
    if not expected or not offered.strip():
        return False
    return hmac.compare_digest(_digest(offered.strip()), _digest(expected))


class BearerAuth:
    """Pure ASGI middleware (no body buffering: uploads stream through untouched)."""

    def __init__(self, app: ASGIApp, token: str | None, enabled: bool) -> None:
        self.app = app
        self.enabled = enabled
        self._expected = _digest(token) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled or not self._protected(scope):
            await self.app(scope, receive, send)
            return
        refusal = self._check(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    @staticmethod
    def _protected(scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        return any(path.startswith(prefix) or path == prefix[:-1] for prefix in PROTECTED_PREFIXES)

    def _check(self, scope: Scope) -> Response | None:
        """None when the request may pass, else the refusal to send."""
        if self._expected is None:
            return problem_response(
                403, "api-locked", "no API token is configured on the appliance and dev mode is off"
            )
        headers = dict(scope.get("headers") or [])
        value = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = value.partition(" ")
        if not value:
            return problem_response(
                401,
                "unauthorized",
                "missing Authorization header (Authorization: Bearer <token>)",
                {"WWW-Authenticate": REALM},
            )
        if scheme.lower() != "bearer" or not token.strip():
            return problem_response(
                401,
                "unauthorized",
                "the Authorization header must use the Bearer scheme",
                {"WWW-Authenticate": REALM},
            )
        if not hmac.compare_digest(_digest(token.strip()), self._expected):
            return problem_response(
                401,
                "unauthorized",
                "the bearer token is not valid",
                {"WWW-Authenticate": REALM + ', error="invalid_token"'},
            )
        return None
