"""``POST /auth/revoke`` — token revocation (RFC 7009).

A client revokes its own tokens: a refresh token takes its whole family with it, an access
token of this server is revoked by its ``jti``. Unknown, invalid or another client's tokens
are answered 200 too (RFC 7009 §2.2), so the answer tells nothing about them.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fkj.errors import Unauthorized
from fkj.security.oauth._client_auth import authenticate_client
from fkj.security.oauth._common import sha256_hex
from fkj.security.oauth._http import OAuthError, oauth_error, read_form
from fkj.security.oauth._issue import revoke_family
from fkj.security.oauth._settings import AuthSettings
from fkj.security.tables import refresh_token


def revoke(s: AuthSettings, headers: Mapping[str, str], form: Mapping[str, str]) -> Response:
    """The answer of the revocation endpoint (blocking: run it in a thread)."""
    try:
        client, _ = authenticate_client(s, headers, form)
    except OAuthError as e:
        return oauth_error(e)
    tok = form.get("token")
    if not tok:
        return oauth_error(OAuthError("invalid_request", "token is required"))
    with s.engine.connect() as conn:
        row = conn.execute(select(refresh_token).where(
            refresh_token.c.token_hash == sha256_hex(tok))).first()
    if row is not None:
        if row.client_id == client.client_id:
            revoke_family(s, row.family_id)
        return Response(status_code=200, headers={"Cache-Control": "no-store"})
    try:
        claims, ti = s.tokens.verify_claims(tok)
        if ti is None and claims.get("client_id") == client.client_id:
            s.tokens.revoke(claims["jti"], claims["exp"], claims.get("tenant"))
    except Unauthorized:
        pass  # RFC 7009: invalid tokens are not an error
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


def revoke_route(s: AuthSettings) -> Route:
    """``POST /auth/revoke``."""

    async def endpoint(request: Request) -> Response:
        form, err = await read_form(request)
        if err:
            return oauth_error(err)
        return await run_in_threadpool(revoke, s, dict(request.headers), form)

    return Route("/auth/revoke", endpoint, methods=["POST"])
