"""Who may read the dashboard: when `DXT_API_TOKEN` is set, whoever typed it into the login form.

The token is asked once; the answer is a session cookie signed with a key derived from the
token (itsdangerous), `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's
page sends it, so no cross-site form can use it) and valid for `SESSION_HOURS`. A page
requested without a valid session is redirected to the login form and shows no data; the JSON
API under `/v1` keeps its bearer token. Without a token the dashboard is open, as the API is.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

COOKIE = "dxt_session"
SESSION_HOURS = 8
LOGIN_PATH = "/dashboard/login"


class Sessions:
    """Issues and checks the dashboard's session cookie for one `DXT_API_TOKEN` (or none)."""

    def __init__(self, token: SecretStr | None) -> None:
        self._token = token.get_secret_value().encode("utf-8") if token else None
        key = hashlib.sha256(b"dxtalent-dashboard-session:" + (self._token or b"")).hexdigest()
        self._signer = URLSafeTimedSerializer(key, salt="dashboard")

    @property
    def required(self) -> bool:
        """Whether the pages ask for the token at all."""
        return self._token is not None

    def token_matches(self, given: str) -> bool:
        """`given` is the service's token (compared in constant time)."""
        return self._token is not None and hmac.compare_digest(given.encode("utf-8"), self._token)

    def open(self, response: Response) -> None:
        """Set the signed session cookie on `response`."""
        response.set_cookie(
            COOKIE,
            self._signer.dumps({"ok": True}),
            max_age=SESSION_HOURS * 3600,
            httponly=True,
            samesite="strict",
            path="/",
        )

    def valid(self, request: Request) -> bool:
        """The request carries a session this service signed less than `SESSION_HOURS` ago."""
        if self._token is None:
            return True
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return False
        try:
            self._signer.loads(cookie, max_age=SESSION_HOURS * 3600)
        except BadSignature:
            return False
        return True

    async def guard(self, request: Request) -> None:
        """A page dependency: no valid session → 303 to the login form, naming the page (a
        coroutine: run on the loop, not in FastAPI's thread pool)."""
        if not self.valid(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(
                303,
                "log in first",
                headers={"Location": f"{LOGIN_PATH}?next={quote(target, safe='')}"},
            )


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path of this dashboard only (no open redirect)."""
    if value and value.startswith("/dashboard/") and not value.startswith("//"):
        return value
    return "/dashboard/progress"
