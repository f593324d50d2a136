"""Fixtures of the audit-flow tests: the session app with the audit log wired in
(``register_audit`` is idempotent; the ``fkj_app`` fixture is shared by the whole session)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from fkj.security.audit.query import search_audit
from tests.conftest import BASE_URL, auth_headers


@pytest.fixture(scope="session")
def audited(fkj_app):
    from fkj.security.audit.wiring import register_audit
    register_audit(fkj_app, enabled=True)
    return fkj_app


@pytest.fixture
def aclient(audited, client):
    """A system client of a fresh tenant, with the audit log on."""
    return client


def client_for(asgi_app, fkj_app, tenant: str, scope: str = "system/*.cruds", **claims):
    c = TestClient(asgi_app, base_url=BASE_URL)
    c.headers.update(auth_headers(fkj_app, tenant, scope, **claims))
    c.tenant = tenant  # type: ignore[attr-defined]
    c.base = f"/fhir/{tenant}"  # type: ignore[attr-defined]
    return c


def audit_rows(fkj_app, tenant: str, **kw) -> list[dict]:
    """The tenant's audit records, oldest first (this process's journaled records chained
    first, as ``$tilgangslogg`` does)."""
    from fkj.security.audit import flush_audit
    flush_audit(fkj_app.services)
    kw.setdefault("limit", 100_000)
    return list(reversed(search_audit(fkj_app.services.engine, tenant, **kw)))


def refs(event: dict, role: str = "4") -> list[str]:
    """Entity references of an AuditEvent (role 4 = data, 1 = patient); compact entities
    are expanded."""
    out = []
    for e in event.get("entity") or ():
        if (e.get("role") or {}).get("code") != role:
            continue
        if (e.get("what") or {}).get("reference"):
            out.append(e["what"]["reference"])
        for d in e.get("detail") or ():
            out += [f"{e['name']}/{i}" for i in d["valueString"].split()]
    return out
