"""Attacks on Subscriptions as other principals (issue 30, items 2, 3 and the ``$events`` /
``$status`` existence oracle of item 11).

A Subscription is its owner's: only the owner (and the tenant's admins) see it on any path,
its ``channel.header`` values are write-only (stored sealed, never returned, masked in
history and exports, still sent with every notification), only the owner binds a websocket
to it, and what a websocket is sent is read and audited as the principal that bound it.
"""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select

from fkj.errors import Unprocessable
from fkj.repository.repository import Repository
from fkj.types import Principal
from tests.events.conftest import (
    FHIR,
    drop_subscriptions,
    event_numbers,
    focuses,
    patient,
    status_of,
    subscription,
)

SECRET = "Bearer harvested-system-token-7d1f"


def _client(ev_asgi, fkj_app, tenant, **claims):
    from tests.policy.conftest import make_client
    return make_client(ev_asgi, fkj_app, tenant, **claims)


@pytest.fixture
def world(ev_asgi, fkj_app, db, events):
    """A tenant under the need-to-know policy, a Subscription owner (a system client), and
    the principals that must not see its Subscriptions: another system client that may read
    every type, a narrow client with only Subscription scope, a nurse, and a rival client
    that may write Subscriptions; plus a tenant admin."""
    from tests.policy.conftest import enable_policy, personnel, put, system

    if getattr(fkj_app, "mint_token", None) is None:
        pytest.skip("needs the security layer")
    t = db.new_tenant()
    enable_policy(fkj_app, t)
    sys = system(ev_asgi, fkj_app, t)
    put(sys, {"resourceType": "Organization", "id": "hjem"})
    put(sys, {"resourceType": "Practitioner", "id": "ns"})
    w = type("World", (), {})()
    w.t, w.sys = t, sys
    w.owner = _client(ev_asgi, fkj_app, t, client_id="eier-app", scope=(
        "system/Subscription.cruds system/Patient.rs system/Observation.rs"))
    w.other = _client(ev_asgi, fkj_app, t, client_id="annen-app", scope="system/*.rs")
    w.narrow = _client(ev_asgi, fkj_app, t, client_id="smal-app",
                       scope="system/Subscription.rs")
    w.nurse = personnel(ev_asgi, fkj_app, t, "ns", ["sykepleier"], "hjem", "9111")
    w.rival = _client(ev_asgi, fkj_app, t, client_id="rival-app",
                      scope="system/Subscription.cruds system/Patient.rs")
    # a tenant admin: personnel with the role systemforvalter (the built-in authorisation
    # server puts roles in personnel tokens only)
    w.admin = personnel(ev_asgi, fkj_app, t, "drift", ["systemforvalter"], "hjem", "9222")
    # the operator: the fkj command line acts as the platform's system principal
    w.operator = Repository(fkj_app.services, Principal.system(t), t)
    yield w
    drop_subscriptions(fkj_app, t)


def _take_over(w, sid: str, **changes) -> None:
    """The operator (a tenant admin) changes the Subscription: it becomes the owner."""
    cur = w.operator.read("Subscription", sid).json()
    cur.update(changes)
    w.operator.update("Subscription", sid, cur)


def _post(c, res):
    r = c.post(f"{c.base}/{res['resourceType']}", json=res, headers=FHIR)
    assert r.status_code == 201, r.text
    return r.json()


def _not_known(r, sid, unknown):
    """``r`` answers exactly as the same request for a Subscription that does not exist."""
    assert r.status_code == unknown.status_code == 404, (r.status_code, r.text)
    assert r.json()["issue"][0]["diagnostics"] == \
        unknown.json()["issue"][0]["diagnostics"].replace("does-not-exist", sid)


def _entry_ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if "resource" in e]


def _stored_text(db, t) -> str:
    """Everything the database holds about the tenant's Subscriptions, as text."""
    from fkj.events.tables import subscription_state as S
    from fkj.store.backend import scope
    from fkj.store.schema import idx_string, idx_token, resource, resource_version
    with scope(db.engine, t) as conn:
        parts = [r[0] for r in conn.execute(select(resource.c.content).where(
            resource.c.tenant == t, resource.c.type == "Subscription"))]
        parts += [r[0] for r in conn.execute(select(resource_version.c.content).where(
            resource_version.c.tenant == t, resource_version.c.type == "Subscription"))]
        parts += [str(tuple(r)) for r in conn.execute(select(S).where(S.c.tenant == t))]
        for table in (idx_token, idx_string):
            parts += [str(tuple(r)) for r in conn.execute(select(table).where(
                table.c.tenant == t, table.c.type == "Subscription"))]
    return "\n".join(parts)


def test_subscriptions_and_their_headers_are_hidden_from_all_but_owner_and_admins(
        world, receiver, db, fkj_app, tmp_path):
    w = world
    sub = _post(w.owner, subscription("resource-change", receiver.url, filters=["Patient"],
                                      headers=[f"Authorization: {SECRET}", "X-Kommune: 4601"]))
    sid = sub["id"]
    # the answer to the create itself does not hand the secret back
    assert sub["channel"]["header"] == ["Authorization: ***", "X-Kommune: ***"]
    assert receiver.wait(lambda r: r.bundles("handshake"))
    assert receiver.headers[0]["Authorization"] == SECRET  # still used for delivery
    basic = _post(w.sys, {"resourceType": "Basic", "code": {"text": "peker"},
                          "subject": {"reference": f"Subscription/{sid}"}})
    # ---- everyone else: as if it did not exist, on every path
    for who in (w.other, w.narrow, w.nurse, w.rival):
        base = who.base
        unknown = who.get(f"{base}/Subscription/does-not-exist")
        _not_known(who.get(f"{base}/Subscription/{sid}"), sid, unknown)
        _not_known(who.get(f"{base}/Subscription/{sid}/_history/1"), sid,
                   who.get(f"{base}/Subscription/does-not-exist/_history/1"))
        assert who.get(f"{base}/Subscription/{sid}/_history").status_code == 404
        for url in (f"{base}/Subscription", f"{base}/Subscription?_id={sid}",
                    f"{base}/Subscription?status=requested,active",
                    f"{base}/Subscription/_history"):
            r = who.get(url)
            assert r.status_code == 200, (url, r.text)
            assert sid not in _entry_ids(r.json()) and SECRET not in r.text, url
            if "_history" not in url:
                assert r.json()["total"] == 0, url
        if who is not w.narrow:  # may read Basic: the include must not bring it along
            r = who.get(f"{base}/Basic?_id={basic['id']}&_include=Basic:subject")
            if r.status_code == 200:
                assert [e["resource"]["resourceType"] for e in r.json()["entry"]] == ["Basic"]
        batch = who.post(base, headers=FHIR, json={
            "resourceType": "Bundle", "type": "batch", "entry": [
                {"request": {"method": "GET", "url": f"Subscription/{sid}"}},
                {"request": {"method": "GET", "url": f"Subscription?_id={sid}"}}]})
        assert batch.status_code == 200, batch.text
        got = batch.json()["entry"]
        assert got[0]["response"]["status"].startswith("404"), got[0]
        assert got[1]["resource"]["total"] == 0
        assert SECRET not in batch.text
    # system-wide history and search of a client that may read every type
    for url in ("/_history", "?_type=Subscription"):
        r = w.other.get(w.other.base + url)
        assert r.status_code == 200, (url, r.text)
        assert sid not in _entry_ids(r.json()), url
    # ---- writes by someone else: 404 as well, nothing changes
    body = {**sub, "channel": {**sub["channel"], "endpoint": receiver.url + "?stjal=1"}}
    _not_known(w.rival.put(f"{w.rival.base}/Subscription/{sid}", json=body, headers=FHIR),
               sid, w.rival.delete(f"{w.rival.base}/Subscription/does-not-exist"))
    _not_known(w.rival.delete(f"{w.rival.base}/Subscription/{sid}"), sid,
               w.rival.delete(f"{w.rival.base}/Subscription/does-not-exist"))
    patch = [{"op": "replace", "path": "/channel/endpoint", "value": "https://ond.example/"}]
    _not_known(w.rival.patch(f"{w.rival.base}/Subscription/{sid}", json=patch,
                             headers={"Content-Type": "application/json-patch+json"}),
               sid, w.rival.patch(f"{w.rival.base}/Subscription/does-not-exist", json=patch,
                                  headers={"Content-Type": "application/json-patch+json"}))
    # ---- the owner and the tenant admin see it, with the header values masked everywhere
    for who in (w.owner, w.admin):
        r = who.get(f"{who.base}/Subscription/{sid}")
        assert r.status_code == 200, r.text
        assert r.json()["channel"]["header"] == ["Authorization: ***", "X-Kommune: ***"]
        for url in (f"Subscription/{sid}/_history", f"Subscription?_id={sid}",
                    "Subscription/_history"):
            r = who.get(f"{who.base}/{url}")
            assert r.status_code == 200 and sid in r.text, (url, r.text)
            assert SECRET not in r.text and "4601" not in r.text.split("X-Kommune")[-1][:20]
    # ---- the secret is nowhere in the database in the clear
    assert SECRET not in _stored_text(db, w.t)
    assert "harvested" not in _stored_text(db, w.t)


def test_header_values_are_write_only_and_kept_when_sent_back_masked(world, receiver, db):
    w = world
    sub = _post(w.owner, subscription("resource-change", receiver.url, filters=["Patient"],
                                      headers=[f"Authorization: {SECRET}"]))
    sid = sub["id"]
    assert receiver.wait(lambda r: r.bundles("handshake"))
    # read, change something else, write back with the masked value: the secret is kept
    cur = w.owner.get(f"{w.owner.base}/Subscription/{sid}").json()
    cur["reason"] = "endret"
    r = w.owner.put(f"{w.owner.base}/Subscription/{sid}", json=cur, headers=FHIR)
    assert r.status_code == 200, r.text
    _post(w.sys, patient())
    assert receiver.wait(lambda r: r.bundles("event-notification"))
    assert receiver.headers[-1]["Authorization"] == SECRET
    # a masked value with nothing stored under that name: refused, naming the element
    cur = r.json()
    cur["channel"]["header"] = ["Authorization: ***", "X-Ny: ***"]
    r = w.owner.put(f"{w.owner.base}/Subscription/{sid}", json=cur, headers=FHIR)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Subscription.channel.header[1]"]
    # the operator takes it over (and becomes the owner): the old owner's secret is not
    # handed to the new owner's configuration, a value of its own must be sent
    with pytest.raises(Unprocessable) as e:
        _take_over(w, sid, channel={**cur["channel"], "header": ["Authorization: ***"]})
    assert e.value.issues[0].expression == ["Subscription.channel.header[0]"]
    _take_over(w, sid, channel={**cur["channel"], "header": ["Authorization: Bearer drift"]})
    # now the operator's: the former owner no longer sees it
    assert w.owner.get(f"{w.owner.base}/Subscription/{sid}").status_code == 404
    assert SECRET not in _stored_text(db, w.t)


def test_exports_leave_out_others_subscriptions_and_mask_headers(
        world, receiver, ev_asgi, fkj_app, tmp_path):
    from tests.bulk.test_export import download, finish, kick_off
    w = world
    # a system-level export needs a wildcard scope: the owner's token for it
    owner = _client(ev_asgi, fkj_app, w.t, client_id="eier-app", scope="system/*.rs")
    fkj_app.services.extras["bulk_export_dir"] = str(tmp_path / "exports")
    try:
        sub = _post(w.owner, subscription("resource-change", receiver.url, filters=["Patient"],
                                          headers=[f"Authorization: {SECRET}"]))
        # a client that may read every type, a nurse, the owner and the admin export
        seen = {}
        for name, who in (("other", w.other), ("nurse", w.nurse), ("owner", owner),
                          ("admin", w.admin)):
            r = kick_off(who, "/$export", _type="Subscription")
            _, done = finish(who, r)
            assert done.status_code == 200, (name, done.text)
            data = download(who, done.json())
            seen[name] = [s["id"] for s in data.get("Subscription", [])]
            for s in data.get("Subscription", []):
                assert s["channel"]["header"] == ["Authorization: ***"]
            text = orjson.dumps(data).decode()
            assert SECRET not in text, name
        assert seen["other"] == [] and seen["nurse"] == []
        assert seen["owner"] == [sub["id"]] and sub["id"] in seen["admin"]
    finally:
        fkj_app.services.extras.pop("bulk_export_dir", None)


def _token(c, sid):
    return c.get(f"{c.base}/Subscription/{sid}/$get-ws-binding-token")


def test_only_the_owner_gets_a_websocket_binding_token(world):
    w = world
    sub = _post(w.owner, subscription("resource-change", None, channel="websocket",
                                      filters=["Patient"], content="full-resource"))
    sid = sub["id"]
    for who in (w.other, w.narrow, w.nurse, w.rival):
        _not_known(_token(who, sid), sid, _token(who, "does-not-exist"))
        r = who.get(f"{who.base}/Subscription/$get-ws-binding-token?id={sid}")
        _not_known(r, sid, who.get(f"{who.base}/Subscription/$get-ws-binding-token"
                                   "?id=does-not-exist"))
    # an admin may see it, but only its owner binds
    r = _token(w.admin, sid)
    assert r.status_code == 403, r.text
    assert _token(w.owner, sid).status_code == 200


def test_websocket_payloads_are_read_and_audited_as_the_principal_that_bound(
        world, ev_asgi, fkj_app):
    """The owner's subscription matches Patients and Observations (its writer's token may
    read both); the socket is bound with a token of the same owner that may read only
    Observations: the Patient stays id-only, and the audit log records the reads of the
    principal that received them."""
    from fkj.security.audit.wiring import register_audit
    from tests.auditflow.conftest import audit_rows, refs

    register_audit(fkj_app, enabled=True)
    w = world
    sub = _post(w.owner, subscription("resource-change", None, channel="websocket",
                                      filters=["Patient", "Observation"],
                                      content="full-resource"))
    binder = _client(ev_asgi, fkj_app, w.t, client_id="eier-app",
                     scope="system/Subscription.rs system/Observation.rs")
    r = _token(binder, sub["id"])
    assert r.status_code == 200, r.text
    token = {p["name"]: p for p in r.json()["parameter"]}["token"]["valueString"]
    with binder.websocket_connect(f"/fhir/{w.t}/subscription-ws") as ws:
        ws.send_text(f"bind-with-token: {token}")
        assert status_of(orjson.loads(ws.receive_text()))["type"]["valueCode"] == "handshake"
        p = _post(w.sys, patient())
        o = _post(w.sys, {"resourceType": "Observation", "status": "final",
                          "code": {"text": "puls"},
                          "subject": {"reference": f"Patient/{p['id']}"}})
        got = []
        while len(event_numbers(got)) < 2:
            b = orjson.loads(ws.receive_text())
            if status_of(b)["type"]["valueCode"] == "event-notification":
                got.append(b)
    assert focuses(got) == [f"Patient/{p['id']}", f"Observation/{o['id']}"]
    sent = [e["resource"] for b in got for e in b["entry"][1:] if "resource" in e]
    assert [(x["resourceType"], x["id"]) for x in sent] == [("Observation", o["id"])]
    reads = [refs(row["event"]) for row in audit_rows(fkj_app, w.t)
             if row["agent"] == "eier-app" and row["subtype"] == "read"]
    assert [f"Observation/{o['id']}/_history/1"] in reads, reads
    assert not any(f"Patient/{p['id']}/_history/1" in x for x in reads), reads


def test_a_socket_lets_go_of_a_subscription_that_changed_owner(world, ev_asgi, fkj_app):
    w = world
    sub = _post(w.owner, subscription("resource-change", None, channel="websocket",
                                      filters=["Patient"], content="full-resource"))
    token = {p["name"]: p for p in _token(w.owner, sub["id"]).json()["parameter"]}
    with w.owner.websocket_connect(f"/fhir/{w.t}/subscription-ws") as ws:
        ws.send_text(f"bind-with-token: {token['token']['valueString']}")
        assert status_of(orjson.loads(ws.receive_text()))["type"]["valueCode"] == "handshake"
        _take_over(w, sub["id"], reason="overtatt")
        _post(w.sys, patient())
        msg = orjson.loads(ws.receive_text())
        assert msg["resourceType"] == "OperationOutcome", msg
        assert "no longer bound" in msg["issue"][0]["diagnostics"]


def test_status_and_events_of_others_answer_as_for_unknown_subscriptions(world, receiver):
    w = world
    sub = _post(w.owner, subscription("resource-change", receiver.url, filters=["Patient"]))
    sid = sub["id"]
    assert receiver.wait(lambda r: r.bundles("handshake"))
    _post(w.sys, patient())
    assert receiver.wait(lambda r: r.bundles("event-notification"))
    for who in (w.other, w.narrow, w.nurse, w.rival):
        b = who.base
        for op in ("$status", "$events", "$events?eventsSinceNumber=1&content=full-resource"):
            _not_known(who.get(f"{b}/Subscription/{sid}/{op}"), sid,
                       who.get(f"{b}/Subscription/does-not-exist/{op}"))
        _not_known(who.post(f"{b}/Subscription/{sid}/$events", headers=FHIR,
                            json={"resourceType": "Parameters", "parameter": []}), sid,
                   who.post(f"{b}/Subscription/does-not-exist/$events", headers=FHIR,
                            json={"resourceType": "Parameters", "parameter": []}))
        for q in (f"?id={sid}", "", f"?id={sid}&status=active"):
            r = who.get(f"{b}/Subscription/$status{q}")
            assert r.status_code == 200, r.text
            assert r.json()["total"] == 0 and sid not in r.text.split('"entry"')[-1]
    for who in (w.owner, w.admin):
        r = who.get(f"{who.base}/Subscription/{sid}/$events?eventsSinceNumber=1")
        assert r.status_code == 200 and event_numbers([r.json()]) == [1], r.text
        assert who.get(f"{who.base}/Subscription/{sid}/$status").status_code == 200


def test_bulk_import_refuses_subscriptions(db, tenant, tmp_path):
    """``fkj import`` stores resources without the repository's hooks: a Subscription would
    have no owner and its header values would be stored in the clear. It is refused with a
    reason, the rest of the file is imported."""
    from sqlalchemy import func

    from fkj.store.backend import scope
    from fkj.store.schema import resource
    from tests.bulk.conftest import run_import

    sub = {**subscription("vedtak", "https://hooks.example.no/x",
                          headers=[f"Authorization: {SECRET}"]), "id": "importert"}
    path = tmp_path / "data.ndjson"
    path.write_bytes(orjson.dumps(sub) + b"\n" + orjson.dumps({**patient(), "id": "p1"}) + b"\n")
    result = run_import(db, tenant, [path], report_dir=tmp_path / "report")
    assert (result.total_loaded, result.total_failed) == (1, 1), result.summary()
    errors = (tmp_path / "report" / "errors.ndjson").read_text()
    assert "Subscriptions are not imported" in errors and SECRET not in errors
    with scope(db.engine, tenant) as conn:
        assert conn.execute(select(func.count()).select_from(resource).where(
            resource.c.tenant == tenant, resource.c.type == "Subscription")).scalar() == 0
    assert SECRET not in _stored_text(db, tenant)
