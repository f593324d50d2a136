"""``GET|POST /auth/authorize`` — the authorisation-code flow (PKCE S256 only) with SMART
launch context.

Redirect rules: until the client and the *exactly* registered redirect URI are established,
errors are shown as an HTML page and never redirected (no open redirect); after that, errors
are returned to the redirect URI as ``error=…&error_description=…&state=…``. A checked
request is sealed and handed to the login method (:mod:`._login`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fkj.security.clients import get_client
from fkj.security.oauth._http import error_page, with_query
from fkj.security.oauth._launch import find_launch
from fkj.security.oauth._login import SEAL_PURPOSE, AuthorizationRequest, LoginMethod
from fkj.security.oauth._settings import AuthSettings
from fkj.security.oauth._types import LaunchContext, PendingAuthorization
from fkj.security.scopes import covered, normalize_scopes

#: RFC 7636 §4.2: BASE64URL(SHA-256(verifier)), 43 characters
CHALLENGE_RE: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")
NOT_CONFIGURED: Final = "Innlogging via HelseID/ID-porten er ikke konfigurert"


def authorize(s: AuthSettings, items: Sequence[tuple[str, str]], login: LoginMethod | None
              ) -> Response:
    """The answer to an authorisation request with parameters ``items`` (blocking: run it in
    a thread): an error page, an error redirect, or what ``login`` starts with (501 without
    a login method)."""
    names = [k for k, _ in items]
    params = dict(items)
    client = get_client(s.engine, params.get("client_id", ""))
    if client is None or client.client_type == "backend":
        return error_page("Ukjent klient (client_id).")
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri or redirect_uri not in client.redirect_uris:
        return error_page("redirect_uri er ikke registrert for denne klienten.")
    state = params.get("state")

    def back(error: str, desc: str) -> Response:
        return RedirectResponse(with_query(redirect_uri, {
            "error": error, "error_description": desc, "state": state}), status_code=302)

    if len(names) != len(set(names)):
        return back("invalid_request", "repeated parameter")
    if params.get("response_type") != "code":
        return back("unsupported_response_type", "only response_type=code")
    challenge = params.get("code_challenge")
    if params.get("code_challenge_method") != "S256" or not challenge:
        return back("invalid_request", "PKCE with code_challenge_method=S256 is required")
    if not CHALLENGE_RE.match(challenge):
        return back("invalid_request", "malformed code_challenge")
    tenant = s.tenant_from_aud(params.get("aud"))
    if tenant is None:
        return back("invalid_request", "aud must be the FHIR base URL of a tenant")
    if not client.allows_tenant(tenant):
        return back("unauthorized_client", "client not registered for this tenant")
    requested = normalize_scopes(params.get("scope"))
    granted = sorted(sc for sc in requested
                     if not sc.startswith("system/") and covered(sc, client.scopes))
    if not granted:
        return back("invalid_scope", "no requested scope is allowed for this client")
    launch: LaunchContext = {}
    launch_id = params.get("launch")
    if launch_id:
        found = find_launch(s.engine, launch_id, tenant)
        if found is None:
            return back("invalid_request", "unknown or expired launch")
        launch = found
    elif "launch" in requested:
        return back("invalid_request", "scope launch requires the launch parameter")
    if login is None:
        return error_page(NOT_CONFIGURED + ".", 501)
    pending: PendingAuthorization = {
        "client_id": client.client_id, "redirect_uri": redirect_uri, "state": state,
        "code_challenge": challenge, "scope": " ".join(granted), "tenant": tenant,
        "launch": launch, "nonce": params.get("nonce"), "ehr": bool(launch)}
    req = s.tokens.seal(dict(pending), SEAL_PURPOSE)
    return login.start(AuthorizationRequest(client, pending, req))


def authorize_route(s: AuthSettings, login: Callable[[], LoginMethod | None]) -> Route:
    """``GET|POST /auth/authorize``; ``login()`` gives the login method at each request."""

    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        else:
            items = list(request.query_params.multi_items())
        return await run_in_threadpool(authorize, s, items, login())

    return Route("/auth/authorize", endpoint, methods=["GET", "POST"])
