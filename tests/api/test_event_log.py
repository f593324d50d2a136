"""Every committed write appends exactly one event, gap-free per tenant; rollbacks none."""

from __future__ import annotations

from sqlalchemy import select

from fkj.store.backend import scope
from fkj.store.schema import event_log
from tests.api.helpers import FHIR, create, patient


def events(db, tenant):
    with scope(db.engine, tenant) as conn:
        return conn.execute(select(event_log).where(event_log.c.tenant == tenant)
                            .order_by(event_log.c.seq)).all()


def test_each_write_appends_one_event_in_order(client, db):
    p = create(client, patient())
    p["active"] = True
    client.put(f"{client.base}/Patient/{p['id']}", json=p, headers=FHIR)
    client.delete(f"{client.base}/Patient/{p['id']}")
    rows = events(db, client.tenant)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert [(r.type, r.id, r.version, r.action) for r in rows] == [
        ("Patient", p["id"], 1, "create"), ("Patient", p["id"], 2, "update"),
        ("Patient", p["id"], 3, "delete")]
    assert all(r.actor for r in rows)


def test_failed_writes_leave_no_event_and_no_gap(client, db):
    create(client, patient())
    bad = client.post(f"{client.base}/Patient", json={"resourceType": "Patient", "foo": 1},
                      headers=FHIR)
    assert bad.status_code == 400
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "nope"},
         "request": {"method": "POST", "url": "Patient"}}]}
    assert client.post(client.base, json=tx, headers=FHIR).status_code == 400
    create(client, patient())
    assert [r.seq for r in events(db, client.tenant)] == [1, 2]


def test_transaction_events_are_consecutive(client, db):
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(f"P{i}"), "request": {"method": "POST", "url": "Patient"}}
        for i in range(25)]}
    assert client.post(client.base, json=tx, headers=FHIR).status_code == 200
    assert [r.seq for r in events(db, client.tenant)] == list(range(1, 26))


def test_sequences_are_per_tenant(client, db):
    create(client, patient())
    other = db.new_tenant()
    from tests.conftest import auth_headers
    r = client.post(f"/fhir/{other}/Patient", json=patient(), headers={
        **FHIR, **auth_headers(client.app.state.fkj, other)})
    assert r.status_code == 201
    assert [e.seq for e in events(db, other)] == [1]
    assert [e.seq for e in events(db, client.tenant)] == [1]
