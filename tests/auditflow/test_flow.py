"""The audit log wired into every request path: writes (in their transaction), reads,
searches, history, operations, Bundles, denials and failures, append-only through the API."""

from __future__ import annotations

import base64
import os

import pytest

from fkj.fhir.request import FhirRequest
from fkj.security.audit import verify_chain
from tests.api.helpers import FHIR, create
from tests.auditflow.conftest import audit_rows, client_for, refs

LOINC = "http://loinc.org"


def obs(pid: str, code: str = "8867-4") -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"}, "valueString": "x"}


def new_rows(fkj, tenant, before: int) -> list[dict]:
    return audit_rows(fkj, tenant)[before:]


def test_register_audit_is_idempotent(audited):
    from fkj.security.audit.wiring import audit_response, audit_writes, guard, register_audit

    hooks = audited.services.hooks
    writer = audited.services.extras["audit_writer"]
    assert register_audit(audited) is writer
    register_audit(audited)
    assert hooks.authorize.count(guard) == 1 and hooks.authorize[0] is guard
    assert hooks.before_commit.count(audit_writes) == 1
    assert audited.after_response.count(audit_response) == 1


def test_writes_are_audited_in_their_transaction(aclient, audited):
    c, t = aclient, aclient.tenant
    p = create(c, {"resourceType": "Patient", "name": [{"family": "Audit"}]})
    o = create(c, obs(p["id"]))
    o["valueString"] = "y"
    assert c.put(f"{c.base}/Observation/{o['id']}", json=o, headers=FHIR).status_code == 200
    assert c.delete(f"{c.base}/Observation/{o['id']}").status_code == 200
    rows = audit_rows(audited, t)
    writes = [(r["action"], r["subtype"], refs(r["event"]), r["patients"]) for r in rows
              if r["action"] in "CUD"]
    assert writes == [
        ("C", "create", [f"Patient/{p['id']}/_history/1"], [f"Patient/{p['id']}"]),
        ("C", "create", [f"Observation/{o['id']}/_history/1"], [f"Patient/{p['id']}"]),
        ("U", "update", [f"Observation/{o['id']}/_history/2"], [f"Patient/{p['id']}"]),
        ("D", "delete", [f"Observation/{o['id']}/_history/3"], [f"Patient/{p['id']}"]),
    ]
    ev = rows[0]["event"]
    assert ev["outcome"] == "0" and ev["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert any(a["who"].get("identifier", {}).get("value") == "fkj-cli" for a in ev["agent"])
    assert verify_chain(audited.services.engine, t).ok


def test_reads_searches_history_and_operations_are_audited(aclient, audited):
    c, t = aclient, aclient.tenant
    p = create(c, {"resourceType": "Patient", "name": [{"family": "Lesbar"}]})
    o = create(c, obs(p["id"]))
    before = len(audit_rows(audited, t))
    assert c.get(f"{c.base}/Observation/{o['id']}").status_code == 200
    assert c.get(f"{c.base}/Observation/{o['id']}/_history/1").status_code == 200
    assert c.get(f"{c.base}/Observation", params={"subject": f"Patient/{p['id']}"}).status_code == 200
    assert c.get(f"{c.base}/Patient/{p['id']}/Observation").status_code == 200
    assert c.get(f"{c.base}/Observation/{o['id']}/_history").status_code == 200
    assert c.get(f"{c.base}/Patient/{p['id']}/$everything").status_code == 200
    assert c.get(f"{c.base}/metadata").status_code == 200  # no clinical data: not audited
    rows = new_rows(audited, t, before)
    got = [(r["action"], r["subtype"]) for r in rows]
    assert got == [("R", "read"), ("R", "vread"), ("E", "search-type"), ("E", "search-type"),
                   ("R", "history-instance"), ("E", "$everything")]
    o_ref = f"Observation/{o['id']}/_history/1"
    for r in rows:
        assert r["patients"] == [f"Patient/{p['id']}"], r
        assert r["outcome"] == "0"
    assert refs(rows[0]["event"]) == [o_ref]
    assert refs(rows[2]["event"]) == [o_ref]
    q = next(e for e in rows[2]["event"]["entity"] if "query" in e)
    assert base64.b64decode(q["query"]).decode() == f"Observation?subject=Patient%2F{p['id']}"
    assert set(refs(rows[5]["event"])) == {f"Patient/{p['id']}/_history/1", o_ref}
    assert verify_chain(audited.services.engine, t).ok


def test_a_set_of_results_is_listed_compactly_and_a_read_in_an_entity(aclient, audited):
    """A search (history, operation) showing several resources lists them in one entity per
    type, ids and versions in a detail; a read names its resource in an entity of its own."""
    c, t = aclient, aclient.tenant
    p = create(c, {"resourceType": "Patient", "name": [{"family": "Kort"}]})
    obs_ids = [create(c, obs(p["id"]))["id"] for _ in range(3)]
    before = len(audit_rows(audited, t))
    assert c.get(f"{c.base}/Observation", params={"subject": f"Patient/{p['id']}"}).status_code == 200
    assert c.get(f"{c.base}/Observation/{obs_ids[0]}").status_code == 200
    search, read = (r["event"] for r in new_rows(audited, t, before))
    data = [e for e in search["entity"] if e["role"]["code"] == "4"]
    assert len(data) == 1 and data[0]["name"] == "Observation" and "what" not in data[0]
    assert sorted(data[0]["detail"][0]["valueString"].split()) == sorted(
        f"{i}/_history/1" for i in obs_ids)
    assert [e["what"]["reference"] for e in search["entity"] if e["role"]["code"] == "1"] == [
        f"Patient/{p['id']}"]
    assert [e["what"]["reference"] for e in read["entity"] if e["role"]["code"] == "4"] == [
        f"Observation/{obs_ids[0]}/_history/1"]


def test_a_search_record_names_every_patient_the_results_refer_to(aclient, audited):
    """The patients of a search's record come from the stored text of what was shown (no
    second parse of the Bundle): the subject, and a patient named anywhere else (performer),
    also in a versioned reference."""
    c, t = aclient, aclient.tenant
    p = create(c, {"resourceType": "Patient", "name": [{"family": "Subjekt"}]})
    q = create(c, {"resourceType": "Patient", "name": [{"family": "Utforer"}]})
    o = obs(p["id"])
    o["performer"] = [{"reference": f"Patient/{q['id']}/_history/1"}]
    create(c, o)
    before = len(audit_rows(audited, t))
    assert c.get(f"{c.base}/Observation", params={"subject": f"Patient/{p['id']}"}).status_code == 200
    (row,) = new_rows(audited, t, before)
    assert row["patients"] == [f"Patient/{p['id']}", f"Patient/{q['id']}"]


def test_large_searchset_gets_a_compact_entity_list(aclient, audited):
    c, t = aclient, aclient.tenant
    entries = [{"resource": {"resourceType": "Patient", "name": [{"family": f"Mange{i}"}]},
                "request": {"method": "POST", "url": "Patient"}} for i in range(60)]
    r = c.post(c.base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
               headers=FHIR)
    assert r.status_code == 200
    ids = {e["response"]["location"].split("/")[-3] for e in r.json()["entry"]}
    assert len(audit_rows(audited, t, outcome="0")) == 60  # one per write of the transaction
    before = len(audit_rows(audited, t))
    assert c.get(f"{c.base}/Patient", params={"_count": "100"}).status_code == 200
    (row,) = new_rows(audited, t, before)
    ev = row["event"]
    compact = [e for e in ev["entity"] if e.get("name") == "Patient"]
    assert len(compact) == 1 and len(ev["entity"]) == 60 + 1 + 1  # patients, compact, query
    assert {x.split("/")[1] for x in refs(ev)} == ids
    assert len(row["patients"]) == 60


def test_bundle_get_entries_and_batch_failures_are_audited(aclient, audited):
    c, t = aclient, aclient.tenant
    p = create(c, {"resourceType": "Patient", "name": [{"family": "Bunt"}]})
    before = len(audit_rows(audited, t))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": obs(p["id"]), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": f"Patient/{p['id']}"}},
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{p['id']}"}}]}
    r = c.post(c.base, json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    rows = new_rows(audited, t, before)
    assert [(x["action"], x["subtype"]) for x in rows] == [
        ("C", "create"), ("R", "read"), ("E", "search-type")]
    assert all(x["patients"] == [f"Patient/{p['id']}"] for x in rows)
    assert refs(rows[1]["event"]) == [f"Patient/{p['id']}/_history/1"]

    before = len(audit_rows(audited, t))
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": obs(p["id"]), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": "Observation/finnes-ikke"}},
        {"request": {"method": "DELETE", "url": "Observation/finnes-heller-ikke"}}]}
    r = c.post(c.base, json=batch, headers=FHIR)
    assert r.status_code == 200
    rows = new_rows(audited, t, before)
    assert sorted((x["action"], x["subtype"], x["outcome"]) for x in rows) == [
        ("C", "create", "0"), ("D", "delete", "4"), ("R", "read", "4")]


def test_failed_transaction_is_audited_as_a_failure(aclient, audited):
    c, t = aclient, aclient.tenant
    before = len(audit_rows(audited, t))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/finnes-ikke"}}]}
    r = c.post(c.base, json=bundle, headers=FHIR)
    assert r.status_code == 404
    (row,) = new_rows(audited, t, before)
    assert (row["action"], row["subtype"], row["outcome"]) == ("E", "transaction", "4")
    assert "404" in row["event"]["outcomeDesc"]


def test_denials_are_audited(audited, asgi_app, tenant):
    sysc = client_for(asgi_app, audited, tenant)
    p = create(sysc, {"resourceType": "Patient", "name": [{"family": "Nekt"}]})
    pr = create(sysc, {"resourceType": "Practitioner", "name": [{"family": "Hemmelig"}]})
    nurse = client_for(asgi_app, audited, tenant, "user/Observation.rs", kind="practitioner",
                       subject="helseid-1", hpr_number="1234567", roles=["sykepleier"],
                       unit="HER:4711")
    before = len(audit_rows(audited, tenant))
    assert nurse.get(f"{nurse.base}/Practitioner/{pr['id']}").status_code == 403
    r = nurse.post(f"{nurse.base}/Observation", json=obs(p["id"]), headers=FHIR)
    assert r.status_code == 403
    rows = new_rows(audited, tenant, before)
    assert [(x["action"], x["subtype"], x["outcome"], x["agent"]) for x in rows] == [
        ("R", "read", "4", "1234567"), ("C", "create", "4", "1234567")]
    assert rows[0]["event"]["outcomeDesc"].startswith("403: ")
    assert rows[1]["patients"] == [f"Patient/{p['id']}"]  # taken from the refused body
    user = rows[0]["event"]["agent"][0]
    assert user["role"] == [{"text": "sykepleier"}] and user["location"] == {"display": "HER:4711"}


def test_unauthenticated_request_is_audited_through_handle(audited, tenant):
    """A request whose token fails inside ``FkjApp.handle`` reaches the hook with no
    principal. (The HTTP edge authenticates before ``handle``: see the report.)"""
    before = len(audit_rows(audited, tenant))
    req = FhirRequest("GET", tenant, ["Patient", "x"], [], {"authorization": "Bearer nope"})
    assert audited.handle(req).status == 401
    req = FhirRequest("GET", tenant, ["Patient", "x"], [], {})
    assert audited.handle(req).status == 401
    rows = new_rows(audited, tenant, before)
    assert [(x["agent"], x["outcome"], x["patients"]) for x in rows] == [
        ("unauthenticated", "4", ["Patient/x"])] * 2


def test_purpose_from_the_policy_is_recorded(aclient, audited):
    """The policy marks emergency access on the repository (``repo.purpose``)."""
    c, t = aclient, aclient.tenant
    p = create(c, {"resourceType": "Patient", "name": [{"family": "Akutt"}]})

    def btg(repo, interaction, rtype, resource=None):
        repo.purpose = "ETREAT BTG"
        repo.purpose_reason = "bevisstløs pasient"

    hooks = audited.services.hooks.authorize
    hooks.append(btg)
    try:
        o = create(c, obs(p["id"]))
        assert c.get(f"{c.base}/Observation/{o['id']}").status_code == 200
    finally:
        hooks.remove(btg)
    rows = audit_rows(audited, t, purpose="BTG")
    assert [(r["action"], r["purpose"]) for r in rows] == [("C", "ETREAT BTG"), ("R", "ETREAT BTG")]
    assert all(r["event"]["outcomeDesc"] == "bevisstløs pasient" for r in rows)


def test_audit_event_is_append_only_through_the_api(aclient, audited):
    c = aclient
    ae = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "action": "R",
          "recorded": "2024-03-02T10:00:00+01:00", "outcome": "0",
          "agent": [{"who": {"display": "x"}, "requestor": True}],
          "source": {"observer": {"display": "x"}}}
    assert c.post(f"{c.base}/AuditEvent", json=ae, headers=FHIR).status_code == 405
    assert c.put(f"{c.base}/AuditEvent/a1", json={**ae, "id": "a1"}, headers=FHIR).status_code == 405
    assert c.delete(f"{c.base}/AuditEvent/a1").status_code == 405
    assert c.delete(f"{c.base}/AuditEvent", params={"_id": "a1"}).status_code == 405
    assert c.patch(f"{c.base}/AuditEvent/a1", json=[],
                   headers={"Content-Type": "application/json-patch+json"}).status_code == 405
    assert c.get(f"{c.base}/AuditEvent").status_code == 403
    assert c.get(f"{c.base}/AuditEvent/a1").status_code == 403
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": ae, "request": {"method": "POST", "url": "AuditEvent"}}]}
    assert c.post(c.base, json=tx, headers=FHIR).status_code == 405
    assert c.get(f"{c.base}/", params={"_type": "AuditEvent"}).json().get("total", 0) == 0


def test_failing_write_audit_rolls_back_the_write(aclient, audited, monkeypatch):
    from fkj.security.audit import wiring

    c = aclient

    def broken(conn, tenant, events):
        raise RuntimeError("audit disk full")

    monkeypatch.setattr(wiring, "append_in_transaction", broken)
    r = c.post(f"{c.base}/Patient", json={"resourceType": "Patient", "id": "x",
                                           "name": [{"family": "Tapt"}]}, headers=FHIR)
    assert r.status_code == 503, r.text
    monkeypatch.undo()
    r = c.get(f"{c.base}/Patient", params={"family": "Tapt"})
    assert r.status_code == 200 and r.json()["total"] == 0


def test_read_fails_when_its_audit_cannot_be_written(aclient, audited, monkeypatch, tmp_path):
    from fkj.security.audit import AuditWriter
    from fkj.store.engine import make_engine

    c = aclient
    p = create(c, {"resourceType": "Patient", "name": [{"family": "Hemmelig"}]})
    bad = AuditWriter(make_engine(f"sqlite:///{tmp_path}/tom.sqlite"), linger=0, timeout=5)
    monkeypatch.setitem(audited.services.extras, "audit_writer", bad)
    r = c.get(f"{c.base}/Patient/{p['id']}")
    assert r.status_code == 503
    assert "Hemmelig" not in r.text and r.json()["resourceType"] == "OperationOutcome"
    r = c.get(f"{c.base}/Patient", params={"family": "Hemmelig"})
    assert r.status_code == 503 and "Hemmelig" not in r.text
    monkeypatch.undo()
    bad.close()
    assert c.get(f"{c.base}/Patient/{p['id']}").status_code == 200


def test_read_fails_when_its_audit_journal_cannot_be_written(aclient, audited, monkeypatch,
                                                            tmp_path):
    """The server's default: the record goes to the process's audit journal before the
    answer. A full disk (every write ENOSPC) fails the read; no data leaves."""
    from fkj.security.audit import AuditWriter
    from fkj.security.audit.journal import AuditJournal

    c = aclient
    p = create(c, {"resourceType": "Patient", "name": [{"family": "Diskfull"}]})
    writer = AuditWriter(audited.services.engine, ship_interval=0.02,
                         journal=AuditJournal(tmp_path, database="test"))
    monkeypatch.setitem(audited.services.extras, "audit_writer", writer)
    assert c.get(f"{c.base}/Patient/{p['id']}").status_code == 200  # opens the journal
    keep = os.dup(writer.journal._fd)  # keeps the segment and its lock
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, writer.journal._fd)
    os.close(full)
    r = c.get(f"{c.base}/Patient/{p['id']}")
    assert r.status_code == 503 and "Diskfull" not in r.text
    assert "journal" in r.json()["issue"][0]["diagnostics"]
    r = c.get(f"{c.base}/Patient", params={"family": "Diskfull"})
    assert r.status_code == 503 and "Diskfull" not in r.text
    monkeypatch.undo()
    writer.close()
    os.close(keep)


@pytest.mark.parametrize("n", [1])
def test_chain_stays_valid_after_mixed_traffic(aclient, audited, n):
    c, t = aclient, aclient.tenant
    p = create(c, {"resourceType": "Patient", "name": [{"family": "Kjede"}]})
    for _ in range(5):
        create(c, obs(p["id"]))
        c.get(f"{c.base}/Patient/{p['id']}")
    rows = audit_rows(audited, t)  # chains this process's journaled read records first
    res = verify_chain(audited.services.engine, t)
    assert res.ok, res.problems
    assert res.checked == len(rows) == 11
