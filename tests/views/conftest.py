"""Fixtures for the overview tests: a seeded tenant per backend and simulators of the
national services running as separate processes, with data consistent with the seed."""

from __future__ import annotations

import pytest

from tests.views.simulators import SimulatorPool

PATIENTS = 5
SEED = 42


@pytest.fixture(scope="session")
def simulators():
    pool = SimulatorPool()
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def views_app(fkj_app):
    from fkj.views.wiring import register_views
    register_views(fkj_app)
    register_views(fkj_app)  # idempotent
    return fkj_app


def seed(db, fkj_app) -> str:
    from fkj.cli.seed import seed_tenant
    t = db.new_tenant()
    seed_tenant(db.engine, fkj_app.settings, t, PATIENTS, SEED)
    return t


@pytest.fixture(scope="session")
def seeded(db, views_app) -> str:
    """A tenant seeded with PATIENTS synthetic patients (shared: tests must not change it)."""
    return seed(db, views_app)


def configure(engine, tenant: str, sources: list[dict], **settings) -> None:
    from fkj.store.tenants import update_tenant_settings
    update_tenant_settings(engine, tenant, sources=sources, **settings)


def headers(fkj, tenant: str, scope: str = "system/*.rs", **claims) -> dict:
    from tests.conftest import auth_headers
    return auth_headers(fkj, tenant, scope, **claims)


def overview(client, tenant: str, pid: str, hdrs: dict, **params):
    r = client.get(f"/fhir/{tenant}/Patient/{pid}/$oversikt", headers=hdrs, params=params)
    return r


def section(bundle: dict, code: str) -> dict:
    comp = bundle["entry"][0]["resource"]
    return next(s for s in comp["section"] if s["code"]["coding"][0]["code"] == code)


def resolve(bundle: dict, ref: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == ref)


def section_items(bundle: dict, code: str) -> list[dict]:
    return [resolve(bundle, e["reference"]) for e in section(bundle, code).get("entry", [])]
