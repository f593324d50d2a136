"""Fixtures of the bulk tests: an app with the export status/file routes, data loaded by the
importer, an export directory per test."""

from __future__ import annotations

import pytest

from fkj.config import Settings
from tests.conftest import BASE_URL, auth_headers


@pytest.fixture(scope="session")
def bulk_asgi(fkj_app):
    from fkj.app import create_app
    from fkj.bulk.routes import ensure_export_routes

    ensure_export_routes(fkj_app)
    return create_app(fkj_app)


@pytest.fixture
def export_dir(fkj_app, tmp_path):
    fkj_app.services.extras["bulk_export_dir"] = str(tmp_path / "exports")
    fkj_app.services.extras.pop("bulk_export_ttl", None)
    yield tmp_path / "exports"
    fkj_app.services.extras.pop("bulk_export_ttl", None)


@pytest.fixture
def bclient(bulk_asgi, fkj_app, tenant, export_dir):
    from starlette.testclient import TestClient

    c = TestClient(bulk_asgi, base_url=BASE_URL)
    c.headers.update(auth_headers(fkj_app, tenant))
    c.tenant = tenant  # type: ignore[attr-defined]
    c.base = f"/fhir/{tenant}"  # type: ignore[attr-defined]
    return c


def settings_for(db) -> Settings:
    return Settings(database_url=db.url, base_url=BASE_URL)


def run_import(db, tenant, paths, **options):
    from fkj.bulk.importer import import_paths
    return import_paths(db.engine, settings_for(db), tenant, [str(p) for p in paths], **options)
