"""Who may see the web console: the API's bearer token, kept in a signed session cookie.

A browser cannot put ``Authorization: Bearer`` on a page load or an ``<img>``, so the
console signs in once: the login form POSTs the token (never in a URL, where it would
land in history and proxy logs), it is checked like the header (constant time,
:func:`service.http.auth.token_matches`) and the answer sets ``minivess_console``:

* value ``<expiry>.<HMAC-SHA256(key, expiry)>`` with the key derived from the token, so
  the cookie is not the token, and changing the token signs every browser out;
* ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends
  it), ``Secure`` when the sidecar serves HTTPS, ``Path=/``, 8 hours (a shift).

State-changing requests (re-sending an export, signing out) are POST forms that also
carry a CSRF token (an HMAC of the session) and must come from this origin when the
browser names one. In dev mode, as for the API, no sign-in is asked; without a token
outside dev mode the console is locked, like the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from service.http.auth import token_matches

COOKIE = "minivess_console"
SESSION_S = 8 * 3600
CSRF_FIELD = "csrf"


class ConsoleSession:
    """Issues and checks the console's session cookie and CSRF tokens."""

    def __init__(self, token: str | None, enabled: bool, secure: bool) -> None:
        self.enabled = enabled  # False in dev mode: every browser is signed in
        self.secure = secure
        self._token = token
        if token:
            self._key = hashlib.sha256(b"minivess-console-session\x00" + token.encode()).digest()
        else:  # dev mode (or locked): a key of this process, so CSRF tokens still verify
            self._key = secrets.token_bytes(32)

    @property
    def locked(self) -> bool:
        """No token configured outside dev mode: nobody can sign in (as the API: 403)."""
        return self.enabled and not self._token

    def _sign(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def sign_in(self, offered: str, response: Response, now: float | None = None) -> bool:
        """Set the session cookie on ``response`` when ``offered`` is the token."""
        if self.locked or not token_matches(self._token, offered):
            return False
        expiry = int((time.time() if now is None else now) + SESSION_S)
        response.set_cookie(
            COOKIE,
            f"{expiry}.{self._sign(f'session:{expiry}')}",
            max_age=SESSION_S,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )
        return True

    def sign_out(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", secure=self.secure, httponly=True,
                               samesite="strict")  # fmt: skip

    def _cookie(self, request: Request) -> str:
        return request.cookies.get(COOKIE, "")

    def signed_in(self, request: Request, now: float | None = None) -> bool:
        if not self.enabled:
            return True
        if self.locked:
            return False
        expiry, _, signature = self._cookie(request).partition(".")
        if not expiry.isdigit() or int(expiry) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(signature, self._sign(f"session:{expiry}"))

    def csrf_token(self, request: Request) -> str:
        """The token a form of this session carries (bound to the session cookie)."""
        return self._sign(f"csrf:{self._cookie(request) if self.enabled else 'dev'}")

    def same_origin(self, request: Request) -> bool:
        """False when the browser names another origin than the one it asked (a form
        posted from another site); browsers send Origin on every POST."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"

    def csrf_ok(self, request: Request, offered: str) -> bool:
        return self.same_origin(request) and hmac.compare_digest(offered, self.csrf_token(request))
