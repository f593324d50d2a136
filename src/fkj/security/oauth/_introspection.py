"""``POST /auth/introspect`` — token introspection (RFC 7662).

Only an authenticated (confidential or backend) client may ask, and only about its own refresh
tokens and about access tokens of this server for a tenant it is registered for; anything
else — unknown, expired, revoked, another client's, a trusted issuer's — is
``{"active": false}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fkj.errors import Unauthorized
from fkj.security.oauth._client_auth import authenticate_client
from fkj.security.oauth._common import sha256_hex
from fkj.security.oauth._http import OAuthError, oauth_error, oauth_json, read_form
from fkj.security.oauth._settings import AuthSettings
from fkj.security.tables import refresh_token
from fkj.store.backend import now_us

#: the claims of an access token an introspection answer repeats
SHOWN_CLAIMS = ("scope", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "jti",
                "tenant", "patient", "encounter", "fhirUser")


def introspect(s: AuthSettings, headers: Mapping[str, str], form: Mapping[str, str]
               ) -> Response:
    """The answer of the introspection endpoint (blocking: run it in a thread)."""
    try:
        client, _ = authenticate_client(s, headers, form, allow_public=False)
    except OAuthError as e:
        return oauth_error(e)
    tok = form.get("token")
    if not tok:
        return oauth_error(OAuthError("invalid_request", "token is required"))
    inactive = oauth_json({"active": False})
    if tok.count(".") != 2:  # maybe a refresh token
        with s.engine.connect() as conn:
            row = conn.execute(select(refresh_token).where(
                refresh_token.c.token_hash == sha256_hex(tok))).first()
        if row is None or row.revoked or row.used is not None or \
                row.expires <= now_us() or row.client_id != client.client_id:
            return inactive
        return oauth_json({"active": True, "token_type": "refresh_token",
                           "scope": row.scope, "client_id": row.client_id,
                           "exp": row.expires // 1_000_000, "tenant": row.tenant})
    try:
        claims, ti = s.tokens.verify_claims(tok)
    except Unauthorized:
        return inactive
    if ti is not None or not client.allows_tenant(claims.get("tenant", "")):
        return inactive
    body: dict[str, Any] = {"active": True, "token_type": "Bearer"}
    for name in SHOWN_CLAIMS:
        if name in claims:
            body[name] = claims[name]
    return oauth_json(body)


def introspect_route(s: AuthSettings) -> Route:
    """``POST /auth/introspect``."""

    async def endpoint(request: Request) -> Response:
        form, err = await read_form(request)
        if err:
            return oauth_error(err)
        return await run_in_threadpool(introspect, s, dict(request.headers), form)

    return Route("/auth/introspect", endpoint, methods=["POST"])
