"""The command line: migrate, tenant create/list, and serve's schema check."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from fkj.store.engine import make_engine


def fkj(*args, url: str, timeout: float = 60):
    env = {**os.environ, "FKJ_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "fkj", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.sqlite'}"


def test_serve_refuses_unmigrated_database(sqlite_url):
    r = fkj("serve", "--port", "0", url=sqlite_url)
    assert r.returncode == 3
    assert "fkj migrate" in r.stderr


def test_migrate_then_tenants(sqlite_url):
    r = fkj("migrate", url=sqlite_url)
    assert r.returncode == 0 and "schema at revision" in r.stdout
    r = fkj("tenant", "create", "4601", "--name", "Bergen", url=sqlite_url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "/fhir/4601" in r.stdout
    listed = fkj("tenant", "list", url=sqlite_url).stdout
    assert "4601" in listed and "Bergen" in listed
    dup = fkj("tenant", "create", "4601", "--name", "Bergen", url=sqlite_url)
    assert dup.returncode == 2 and "exists" in dup.stdout


@pytest.mark.parametrize("nr,reason", [("46O1", "four digits"), ("460", "four digits"),
                                       ("9999", "not a kommunenummer")])
def test_tenant_create_validates_kommunenummer(sqlite_url, nr, reason):
    fkj("migrate", url=sqlite_url)
    r = fkj("tenant", "create", nr, "--name", "X", url=sqlite_url)
    assert r.returncode == 2
    assert reason in r.stdout


def test_serve_refuses_newer_schema(sqlite_url):
    fkj("migrate", url=sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    r = fkj("serve", "--port", "0", url=sqlite_url)
    assert r.returncode == 3
    assert "newer" in r.stderr


def test_token_only_in_demo_mode_and_accepted_by_the_server(sqlite_url, tmp_path):
    fkj("migrate", url=sqlite_url)
    fkj("tenant", "create", "4601", "--name", "Bergen", url=sqlite_url)
    env_demo = {k: v for k, v in os.environ.items() if k != "FKJ_DEMO"}
    refused = subprocess.run([sys.executable, "-m", "fkj", "token", "--tenant", "4601"],
                             capture_output=True, text=True,
                             env={**env_demo, "FKJ_DATABASE_URL": sqlite_url}, timeout=60)
    assert refused.returncode == 2 and "demo" in refused.stderr
    r = fkj("token", "--tenant", "4601", "--scope", "system/Patient.rs", "--demo",
            "--base-url", "http://testserver", url=sqlite_url)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.count(".") == 2

    from starlette.testclient import TestClient

    from fkj.cli.serve import build_server_app
    from fkj.config import Settings
    app = build_server_app(Settings(database_url=sqlite_url, base_url="http://testserver"))
    c = TestClient(app, base_url="http://testserver")
    ok = c.get("/fhir/4601/Patient", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["resourceType"] == "Bundle"
    denied = c.get("/fhir/4601/Observation", headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403
    assert c.get("/fhir/4601/Patient").status_code == 401


def test_reindex_command(sqlite_url):
    fkj("migrate", url=sqlite_url)
    fkj("tenant", "create", "4601", "--name", "Bergen", url=sqlite_url)
    r = fkj("seed", "--tenant", "4601", "--patients", "3", url=sqlite_url, timeout=300)
    assert r.returncode == 0, r.stderr
    loaded = int(r.stdout.split("seeded ")[1].split()[0])
    r = fkj("reindex", "--tenant", "4601", url=sqlite_url, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"reindexed {loaded} resources" in r.stdout
