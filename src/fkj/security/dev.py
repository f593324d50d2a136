"""Development tokens for the ``fkj token`` CLI (demo/dev mode only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from fkj.errors import Forbidden
from fkj.security.keys import KeyRing
from fkj.security.tokens import TokenService


def mint_dev_token(engine: Engine, tenant: str, scope: str, *, demo: bool,
                   base_url: str = "http://127.0.0.1:8080", subject: str | None = None,
                   kind: str = "client", client_id: str = "fkj-cli", lifetime: int = 3600,
                   **claims: Any) -> str:
    """Sign an access token with the server's own keys (so the running server accepts it).

    ``claims`` are passed to :meth:`TokenService.issue` (hpr_number, pid, roles, unit, acr,
    patient, encounter, fhir_user…). Refuses unless ``demo`` is true.
    """
    if not demo:
        raise Forbidden("dev tokens can only be minted in demo/dev mode (FKJ_DEMO=1)")
    ts = TokenService(engine, KeyRing(engine), base_url)
    if kind == "citizen":
        claims.setdefault("acr", "idporten-loa-substantial")
    return ts.issue_access_token(tenant=tenant, subject=subject or client_id, scope=scope,
                                 client_id=client_id, kind=kind, lifetime=lifetime, **claims)
