"""Issuing tokens from a grant, and token families.

A *family* is every refresh token (and the access tokens issued with them) descended from one
authorisation code. Refresh tokens rotate: each is used once; a second use, or a second use of
the code, revokes the whole family, its access tokens included (OAuth 2.0 Security BCP §4.14).
Codes and refresh tokens are stored only as their SHA-256.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import insert, select, update

from fkj.security.clients import Client
from fkj.security.oauth._common import sha256_hex
from fkj.security.oauth._settings import AuthSettings
from fkj.security.oauth._types import Grant
from fkj.security.tables import refresh_token
from fkj.store.backend import now_us, write_transaction


def revoke_family(s: AuthSettings, family_id: str | None) -> None:
    """Revoke every refresh token of the family and the access tokens issued with them."""
    if not family_id:
        return
    with write_transaction(s.engine) as conn:
        rows = conn.execute(select(refresh_token.c.access_jti, refresh_token.c.access_exp,
                                   refresh_token.c.tenant).where(
            refresh_token.c.family_id == family_id)).all()
        conn.execute(update(refresh_token).where(
            refresh_token.c.family_id == family_id).values(revoked=True))
    for jti, exp, tenant in rows:
        if jti:
            s.tokens.revoke(jti, (exp or now_us()) / 1_000_000, tenant)


def issue_tokens(s: AuthSettings, client: Client, tenant: str, scope: str, grant: Grant,
                 family_id: str | None, refresh_scope: str | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """The token response for ``grant`` with ``scope``: an access token, an ID token when
    ``openid`` and ``fhirUser`` or ``profile`` are granted, and a refresh token (in
    ``family_id``, a new family if None) when ``offline_access`` or ``online_access`` is in
    ``refresh_scope`` (default ``scope``). Returns (response body, access claims, family)."""
    scopes = scope.split()
    token, claims = s.tokens.issue(
        tenant=tenant, subject=grant["sub"], scope=scopes, client_id=client.client_id,
        kind=grant["kind"], hpr_number=grant.get("hpr_number"), pid=grant.get("pid"),
        organisation=grant.get("organisation"), roles=grant.get("roles") or (),
        unit=grant.get("unit"), acr=grant.get("acr"), patient=grant.get("patient"),
        encounter=grant.get("encounter"), fhir_user=grant.get("fhir_user"))
    body: dict[str, Any] = {
        "access_token": token, "token_type": "Bearer",
        "expires_in": claims["exp"] - claims["iat"], "scope": claims["scope"],
        "need_patient_banner": bool(grant.get("need_patient_banner", False)),
        "tenant": tenant,
    }
    for name in ("patient", "encounter"):
        value = grant.get(name)
        if value:
            body[name] = value
    if s.smart_style_url:
        body["smart_style_url"] = s.smart_style_url
    if "openid" in scopes and ("fhirUser" in scopes or "profile" in scopes):
        body["id_token"] = s.tokens.issue_id_token(
            subject=grant["sub"], client_id=client.client_id,
            fhir_user=grant.get("fhir_user"), nonce=grant.get("nonce"))
    rscope = refresh_scope or scope
    offline = "offline_access" in rscope.split()
    online = "online_access" in rscope.split()
    if offline or online:
        family_id = family_id or secrets.token_urlsafe(18)
        rt = secrets.token_urlsafe(32)
        now = now_us()
        life = s.offline_refresh_lifetime if offline else s.online_refresh_lifetime
        with write_transaction(s.engine) as conn:
            conn.execute(insert(refresh_token).values(
                token_hash=sha256_hex(rt), family_id=family_id, tenant=tenant,
                client_id=client.client_id, scope=rscope, grant=json.dumps(grant),
                created=now, expires=now + life * 1_000_000, used=None, revoked=False,
                access_jti=claims["jti"], access_exp=claims["exp"] * 1_000_000))
        body["refresh_token"] = rt
    return body, claims, family_id
