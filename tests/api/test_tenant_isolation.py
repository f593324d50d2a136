"""Tenants: unknown tenant → 404; data of one tenant is invisible from another; on
PostgreSQL row-level security holds even when the application filter is removed."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from fkj.store.backend import scope
from fkj.store.schema import resource
from tests.api.helpers import FHIR, create, patient
from tests.conftest import auth_headers


def test_unknown_tenant_is_404_operation_outcome(client):
    r = client.get("/fhir/0000/Patient")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


def test_resource_of_tenant_a_is_not_found_in_tenant_b(client, db):
    p = create(client, patient("Isolert"))
    other = db.new_tenant()
    h = auth_headers(client.app.state.fkj, other)
    assert client.get(f"/fhir/{other}/Patient/{p['id']}", headers=h).status_code == 404
    found = client.get(f"/fhir/{other}/Patient?name=Isolert", headers=h).json()
    assert found.get("total") == 0 and not found.get("entry")
    hist = client.get(f"/fhir/{other}/_history", headers=h).json()
    assert hist["total"] == 0


def test_row_level_security_without_application_filter(client, db):
    if db.backend != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature; SQLite relies on the filter")
    create(client, patient("Rad"))
    other = db.new_tenant()
    # a query with NO tenant condition at all, under tenant B's setting
    with scope(db.engine, other) as conn:
        assert conn.execute(select(resource.c.id)).all() == []
        assert conn.execute(text("SELECT count(*) FROM resource_version")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM idx_string")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM event_log")).scalar() == 0
    with scope(db.engine, client.tenant) as conn:
        assert len(conn.execute(select(resource.c.id)).all()) == 1
    # and writing a row for another tenant is refused by the policy
    with pytest.raises(Exception, match="row-level security"):
        with scope(db.engine, other, write=True) as conn:
            conn.execute(text(
                "INSERT INTO event_log (tenant, seq, type, id, version, action, time, actor) "
                f"VALUES ('{client.tenant}', 999, 'Patient', 'x', 1, 'create', 0, 'attacker')"))
