"""The database ends the server's connections (a restart, a failover, an administrator): the
pooled connections it ended are replaced before use, and a request whose connection is lost
under it gets 503 with Retry-After — never a 500 — and nothing half-done (PostgreSQL: SQLite
has no server to lose)."""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from fkj.store.engine import make_engine
from tests.conftest import BASE_URL, auth_headers
from tests.locks import chain_head_held


@pytest.fixture
def own_app(db):
    """An app of its own whose connections carry a name of their own, so this test ends
    only them (not the session's shared pools, nor another test run's)."""
    if db.backend != "postgresql":
        pytest.skip("connections ended by the database server: PostgreSQL")
    from fkj.app import build_fkj, create_app
    from fkj.config import Settings
    from fkj.security.audit.wiring import register_audit
    from fkj.wiring import wire

    name = f"fkj_loss_{uuid.uuid4().hex[:8]}"
    url = f"{db.url}&application_name={name}"
    fkj = build_fkj(Settings(database_url=url, base_url=BASE_URL, demo=True),
                    engine=make_engine(url))
    wire(fkj)
    register_audit(fkj, enabled=True)
    tenant = db.new_tenant()
    c = TestClient(create_app(fkj), base_url=BASE_URL)
    c.headers.update({**auth_headers(fkj, tenant), "Content-Type": "application/fhir+json"})
    c.base = f"/fhir/{tenant}"  # type: ignore[attr-defined]
    yield c, name, tenant
    fkj.close()
    fkj.services.engine.dispose()


def _sessions(db, name: str, where: str = "true") -> list[int]:
    with db.owner_engine.connect() as conn:
        return [pid for pid, in conn.execute(text(
            f"SELECT pid FROM pg_stat_activity WHERE application_name = :n AND {where}"),
            {"n": name})]


def _terminate(db, pids: list[int]) -> None:
    with db.owner_engine.connect() as conn:
        for pid in pids:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()


def _wait_gone(db, name: str, pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while set(pids) & set(_sessions(db, name)):
        assert time.monotonic() < deadline, "terminated sessions did not end"
        time.sleep(0.05)


def _patient(c, family: str) -> str:
    r = c.post(f"{c.base}/Patient", content=orjson.dumps(
        {"resourceType": "Patient", "name": [{"family": family}]}))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_connections_ended_by_the_database_are_replaced_before_use(db, own_app):
    c, name, _ = own_app
    pid = _patient(c, "Omstart")
    # several pooled connections: concurrent reads each check one out
    threads = [threading.Thread(target=lambda: [c.get(f"{c.base}/Patient/{pid}")
                                                for _ in range(20)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ended = _sessions(db, name)
    assert ended, "the app holds pooled connections"
    _terminate(db, ended)  # what a restart of the database does to every session
    _wait_gone(db, name, ended)

    # every request after it succeeds; without the check at checkout the first request on
    # each ended connection failed
    for _ in range(len(ended) + 2):
        r = c.get(f"{c.base}/Patient/{pid}")
        assert r.status_code == 200, r.text
        assert r.json()["name"][0]["family"] == "Omstart"
    assert _patient(c, "Etterpå")
    r = c.get(f"{c.base}/Patient", params={"family": "Etterpå"})
    assert r.status_code == 200 and r.json()["total"] == 1, r.text
    assert not set(ended) & set(_sessions(db, name))


def test_a_write_whose_connection_is_lost_answers_503_and_stores_nothing(db, own_app):
    c, name, tenant = own_app
    _patient(c, "Før")  # the tenant's audit chain head exists
    answer: list = []
    # the write waits for the audit chain head (its audit commits with it)
    with chain_head_held(db.engine, tenant):
        writer = threading.Thread(target=lambda: answer.append(c.post(
            f"{c.base}/Patient", content=orjson.dumps(
                {"resourceType": "Patient", "name": [{"family": "Tapt"}]}))))
        writer.start()
        deadline = time.monotonic() + 10
        while not (waiting := _sessions(db, name, "wait_event_type = 'Lock'")):
            assert time.monotonic() < deadline, "the write never waited for the lock"
            time.sleep(0.02)
        _terminate(db, waiting)
        writer.join(30)
    r = answer[0]
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    issue = r.json()["issue"][0]
    assert r.json()["resourceType"] == "OperationOutcome" and issue["code"] == "transient"
    assert "retry" in issue["diagnostics"]
    # nothing half-done: the Patient is not there, and the next write works
    r = c.get(f"{c.base}/Patient", params={"family": "Tapt"})
    assert r.status_code == 200 and r.json()["total"] == 0, r.text
    assert _patient(c, "Tapt")
