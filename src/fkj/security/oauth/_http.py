"""The answers of the authorisation server: OAuth JSON, OAuth errors, pages, redirects.

Every answer is ``no-store`` (tokens: RFC 6749 §5.1, with ``Pragma: no-cache``; pages:
:data:`fkj.web.pages.PAGE_HEADERS`) except the public discovery documents, which say
:data:`DISCOVERY_CACHE`. Errors of the token, introspection and revocation endpoints are
``{"error", "error_description"}`` (RFC 6749 §5.2), 401 with ``WWW-Authenticate: Basic``
when the client could not be authenticated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from fkj.web.pages import render

#: the public discovery documents (.well-known, JWKS) may be cached for five minutes; every
#: other answer of this server is ``no-store`` (fkj.edge; RFC 6749 §5.1 for tokens)
DISCOVERY_CACHE: Final = {"Cache-Control": "public, max-age=300"}


class OAuthError(Exception):
    """An OAuth error answer: ``error`` code, its description and the HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def oauth_json(body: Mapping[str, Any], status: int = 200,
               headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON answer of the token, introspection or revocation endpoint (never cached)."""
    h = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    h.update(headers or {})
    return JSONResponse(body, status_code=status, headers=h)


def oauth_error(e: OAuthError) -> JSONResponse:
    """``e`` as an RFC 6749 §5.2 error answer."""
    headers = {"WWW-Authenticate": 'Basic realm="fkj"'} if e.status == 401 else None
    return oauth_json({"error": e.error, "error_description": e.description}, e.status,
                      headers)


async def read_form(request: Request) -> tuple[dict[str, str], OAuthError | None]:
    """The form of a token, introspection or revocation request: form-encoded, no parameter
    twice (RFC 6749 §3.2)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        return {}, OAuthError("invalid_request", "form-encoded body required")
    form = await request.form()
    items = list(form.multi_items())
    if len({k for k, _ in items}) != len(items):
        return {}, OAuthError("invalid_request", "repeated parameter")
    return {k: v for k, v in items if isinstance(v, str)}, None


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """The page ``web/templates/auth/{name}``, autoescaped (:mod:`fkj.web.pages`)."""
    return render(f"auth/{name}", status, **context)


def error_page(message: str, status: int = 400) -> HTMLResponse:
    """An error shown to the person logging in (never a redirect: see :mod:`._authorize`)."""
    return page("error.html", status, message=message)


def with_query(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` (those not None) added to its query.

    >>> with_query("https://app.example/cb?x=1", {"code": "c", "state": None})
    'https://app.example/cb?x=1&code=c'
    """
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
