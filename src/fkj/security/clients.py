"""Registered OAuth clients (SMART apps and backend services).

client_type:

* ``public`` — browser/native SMART app, no client authentication, PKCE only;
* ``confidential`` — SMART app with a client secret (``client_secret_basic``) or a JWKS
  (``private_key_jwt``);
* ``backend`` — SMART Backend Services: ``client_credentials`` with ``private_key_jwt`` only,
  ``system/`` scopes only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import Engine, insert, or_, select

from fkj.store.backend import write_transaction
from fkj.security.tables import oauth_client

CLIENT_TYPES = ("public", "confidential", "backend")


@dataclass(frozen=True)
class Client:
    client_id: str
    tenant: str | None
    name: str
    client_type: str
    redirect_uris: tuple[str, ...]
    secret_hash: str | None
    jwks: dict[str, Any] | None
    scopes: tuple[str, ...]

    def allows_tenant(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${h.hex()}"


def check_secret(client: Client, secret: str | None) -> bool:
    if not client.secret_hash or secret is None:
        return False
    try:
        algo, salt_hex, hash_hex = client.secret_hash.split("$")
    except ValueError:
        return False
    if algo != "scrypt":
        return False
    h = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt_hex), n=2**14, r=8, p=1,
                       dklen=32)
    return hmac.compare_digest(h.hex(), hash_hex)


def _row(row) -> Client:
    return Client(row.client_id, row.tenant, row.name, row.client_type,
                  tuple(json.loads(row.redirect_uris or "[]")), row.secret_hash,
                  json.loads(row.jwks) if row.jwks else None, tuple((row.scopes or "").split()))


def register_client(engine: Engine, client_id: str, *, client_type: str, name: str = "",
                    tenant: str | None = None, redirect_uris: Iterable[str] = (),
                    client_secret: str | None = None, jwks: dict[str, Any] | None = None,
                    scopes: str | Iterable[str] = "") -> Client:
    """Register a client. Public keys only in ``jwks`` (private parts are refused)."""
    if client_type not in CLIENT_TYPES:
        raise ValueError(f"client_type must be one of {CLIENT_TYPES}")
    redirect_uris = list(redirect_uris)
    if client_type == "backend" and (redirect_uris or client_secret):
        raise ValueError("backend clients authenticate with private_key_jwt only")
    if client_type == "backend" and not jwks:
        raise ValueError("backend clients need a jwks")
    if client_type == "public" and (client_secret or jwks):
        raise ValueError("public clients have no credentials")
    if client_type == "confidential" and not (client_secret or jwks):
        raise ValueError("confidential clients need a secret or a jwks")
    if client_type != "backend" and not redirect_uris:
        raise ValueError("SMART app clients need at least one redirect URI")
    for uri in redirect_uris:
        if "#" in uri or "://" not in uri or any(ch.isspace() for ch in uri):
            raise ValueError(f"bad redirect URI {uri!r}")
    if jwks is not None:
        for k in jwks.get("keys", []):
            if any(p in k for p in ("d", "p", "q", "dp", "dq", "qi", "k")):
                raise ValueError("jwks must contain public keys only")
    if isinstance(scopes, str):
        scopes = scopes.split()
    with write_transaction(engine) as conn:
        conn.execute(insert(oauth_client).values(
            client_id=client_id, tenant=tenant, name=name or client_id, client_type=client_type,
            redirect_uris=json.dumps(redirect_uris),
            secret_hash=hash_secret(client_secret) if client_secret else None,
            jwks=json.dumps(jwks) if jwks else None, scopes=" ".join(scopes),
            created=int(time.time() * 1e6)))
    client = get_client(engine, client_id)
    assert client is not None
    return client


def get_client(engine: Engine, client_id: str) -> Client | None:
    if not isinstance(client_id, str) or not client_id:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(oauth_client).where(
            oauth_client.c.client_id == client_id)).first()
    return _row(row) if row else None


def list_clients(engine: Engine, tenant: str | None = None) -> list[Client]:
    """All clients, or those usable for ``tenant`` (its own and the all-tenant ones)."""
    q = select(oauth_client).order_by(oauth_client.c.client_id)
    if tenant is not None:
        q = q.where(or_(oauth_client.c.tenant == tenant, oauth_client.c.tenant.is_(None)))
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q).all()]
