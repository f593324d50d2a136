"""The token endpoint and its grants: ``authorization_code`` (with PKCE),
``refresh_token`` (rotated; reuse revokes the family; no scope escalation) and
``client_credentials`` (SMART Backend Services: ``private_key_jwt``, ``system/`` scopes).

Each grant takes the authenticated client and the form and returns the token response, or
raises :class:`OAuthError`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import select, update
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fkj.security.clients import Client
from fkj.security.oauth._client_auth import ClientAuthMethod, authenticate_client
from fkj.security.oauth._common import TENANT_RE, sha256_hex
from fkj.security.oauth._http import OAuthError, oauth_error, oauth_json, read_form
from fkj.security.oauth._issue import issue_tokens, revoke_family
from fkj.security.oauth._settings import AuthSettings
from fkj.security.oauth._types import Grant
from fkj.security.scopes import all_covered, normalize_scopes
from fkj.security.tables import auth_code, refresh_token
from fkj.store.backend import now_us, write_transaction

GRANT_TYPES: Final = ("authorization_code", "refresh_token", "client_credentials")
#: RFC 7636 §4.1
VERIFIER_RE: Final = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


def grant_authorization_code(s: AuthSettings, client: Client, form: Mapping[str, str]
                             ) -> dict[str, Any]:
    """Exchange a code: once only (a second use revokes what the first issued), before it
    expires, with the same redirect URI and the PKCE verifier of its S256 challenge."""
    code = form.get("code")
    if not code:
        raise OAuthError("invalid_request", "code is required")
    code_hash = sha256_hex(code)
    with s.engine.connect() as conn:
        row = conn.execute(select(auth_code).where(auth_code.c.code_hash == code_hash)
                           ).first()
    if row is None or row.client_id != client.client_id:
        raise OAuthError("invalid_grant", "unknown code")
    now = now_us()
    with write_transaction(s.engine) as conn:
        claimed = conn.execute(update(auth_code).where(
            auth_code.c.code_hash == code_hash, auth_code.c.used.is_(None)).values(
            used=now)).rowcount
    if claimed != 1:
        with s.engine.connect() as conn:
            used = conn.execute(select(auth_code).where(
                auth_code.c.code_hash == code_hash)).first()
        if used is not None:  # codes are never deleted
            if used.access_jti:
                s.tokens.revoke(used.access_jti, used.access_exp / 1_000_000, used.tenant)
            revoke_family(s, used.family_id)
        raise OAuthError("invalid_grant", "code already used; tokens issued from it revoked")
    if row.expires <= now:
        raise OAuthError("invalid_grant", "code expired")
    if form.get("redirect_uri") != row.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match")
    verifier = form.get("code_verifier")
    if not verifier:
        raise OAuthError("invalid_grant", "code_verifier is required (PKCE)")
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                      ).rstrip(b"=").decode()
    if not VERIFIER_RE.match(verifier) or not secrets.compare_digest(
            digest, row.code_challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match")
    grant: Grant = json.loads(row.grant)
    body, claims, family = issue_tokens(s, client, row.tenant, row.scope, grant, None)
    with write_transaction(s.engine) as conn:
        conn.execute(update(auth_code).where(auth_code.c.code_hash == code_hash).values(
            access_jti=claims["jti"], access_exp=claims["exp"] * 1_000_000,
            family_id=family))
    return body


def grant_refresh_token(s: AuthSettings, client: Client, form: Mapping[str, str]
                        ) -> dict[str, Any]:
    """Rotate a refresh token: once only (reuse revokes the family), before it expires, for
    at most the scope first granted."""
    rt = form.get("refresh_token")
    if not rt:
        raise OAuthError("invalid_request", "refresh_token is required")
    h = sha256_hex(rt)
    with s.engine.connect() as conn:
        row = conn.execute(select(refresh_token).where(refresh_token.c.token_hash == h)
                           ).first()
    if row is None or row.client_id != client.client_id:
        raise OAuthError("invalid_grant", "unknown refresh token")
    if row.revoked or row.used is not None:
        revoke_family(s, row.family_id)
        raise OAuthError("invalid_grant", "refresh token already used; family revoked")
    if row.expires <= now_us():
        raise OAuthError("invalid_grant", "refresh token expired")
    scope: str = row.scope
    if form.get("scope"):
        requested = normalize_scopes(form["scope"])
        if not requested or not all_covered(requested, row.scope.split()):
            raise OAuthError("invalid_scope", "requested scope exceeds the original grant")
        scope = " ".join(sorted(requested))
    with write_transaction(s.engine) as conn:
        claimed = conn.execute(update(refresh_token).where(
            refresh_token.c.token_hash == h, refresh_token.c.used.is_(None),
            refresh_token.c.revoked.is_(False)).values(used=now_us())).rowcount
    if claimed != 1:
        revoke_family(s, row.family_id)
        raise OAuthError("invalid_grant", "refresh token already used; family revoked")
    grant: Grant = json.loads(row.grant)
    body, _, _ = issue_tokens(s, client, row.tenant, scope, grant, row.family_id,
                              refresh_scope=row.scope)
    return body


def grant_client_credentials(s: AuthSettings, client: Client, method: ClientAuthMethod,
                             form: Mapping[str, str]) -> dict[str, Any]:
    """A backend service's token: ``private_key_jwt`` only, ``system/`` scopes the client
    may have, for its own tenant (or the one it names, if registered for all)."""
    if client.client_type != "backend" or method != "private_key_jwt":
        raise OAuthError("unauthorized_client",
                         "client_credentials is for backend clients with private_key_jwt")
    requested = normalize_scopes(form.get("scope"))
    if not requested:
        raise OAuthError("invalid_scope", "scope is required")
    bad = [sc for sc in requested if not sc.startswith("system/")]
    if bad:
        raise OAuthError("invalid_scope", f"only system/ scopes for backend services: {bad}")
    if not all_covered(requested, client.scopes):
        raise OAuthError("invalid_scope", "scope not allowed for this client")
    tenant = client.tenant or form.get("tenant") or s.tenant_from_aud(form.get("aud"))
    if not tenant or not TENANT_RE.match(tenant) or not client.allows_tenant(tenant):
        raise OAuthError("invalid_request", "tenant unknown or not allowed for the client")
    grant: Grant = {"kind": "client", "sub": client.client_id}
    body, _, _ = issue_tokens(s, client, tenant, " ".join(sorted(requested)), grant, None)
    body.pop("need_patient_banner", None)
    return body


def token(s: AuthSettings, headers: Mapping[str, str], form: Mapping[str, str]) -> Response:
    """The answer of the token endpoint (blocking: run it in a thread)."""
    try:
        grant_type = form.get("grant_type")
        if grant_type not in GRANT_TYPES:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r}")
        client, method = authenticate_client(s, headers, form)
        if grant_type == "authorization_code":
            return oauth_json(grant_authorization_code(s, client, form))
        if grant_type == "refresh_token":
            return oauth_json(grant_refresh_token(s, client, form))
        return oauth_json(grant_client_credentials(s, client, method, form))
    except OAuthError as e:
        return oauth_error(e)


def token_route(s: AuthSettings) -> Route:
    """``POST /auth/token``."""

    async def endpoint(request: Request) -> Response:
        form, err = await read_form(request)
        if err:
            return oauth_error(err)
        return await run_in_threadpool(token, s, dict(request.headers), form)

    return Route("/auth/token", endpoint, methods=["POST"])
