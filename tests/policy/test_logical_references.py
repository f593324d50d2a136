"""A patient named only by identifier (a fødselsnummer in ``subject.identifier``, no
``Patient/…`` reference) is the same patient as far as the policy, sperring, the audit log
and the citizen's access log are concerned (issue 30, item 4): the reference is resolved
to the tenant's Patient when the resource is written, or the write is refused."""

from __future__ import annotations

import orjson
import pytest

from fkj.model.identifiers import DNR_SYSTEM
from tests.api.builders import dnr, fnr
from tests.auditflow.conftest import audit_rows, refs
from tests.policy.conftest import FNR, citizen, ids, personnel, put, sperring
from tests.policy.test_attacks import REASON

MINE, OTHER = "01817012309", "02827012338"  # the fødselsnumre of Patient/mine and /other
UNKNOWN = fnr()  # valid, and no Patient of the tenant has it


@pytest.fixture(autouse=True)
def _audit_on(fkj_app):
    from fkj.security.audit.wiring import register_audit
    register_audit(fkj_app, enabled=True)


def by_fnr(value: str, **extra) -> dict:
    return {"identifier": {"system": FNR, "value": value}, **extra}


def condition(subject: dict, code: str = "logisk", **extra) -> dict:
    return {"resourceType": "Condition", "subject": subject,
            "code": {"coding": [{"system": "http://x", "code": code}]}, **extra}


def post(c, res: dict):
    return c.post(f"{c.base}/{res['resourceType']}", json=res)


def test_the_reference_is_resolved_to_the_patient_when_written(w):
    c, _ = w
    r = post(c, condition(by_fnr(OTHER)))
    assert r.status_code == 201, r.text
    stored = c.get(f"{c.base}/Condition/{r.json()['id']}").json()
    assert stored["subject"] == {"reference": "Patient/other",
                                 "identifier": {"system": FNR, "value": OTHER}}
    # the patient's compartment holds it (indexed as Patient/other)
    b = c.get(f"{c.base}/Patient/other/Condition").json()
    assert r.json()["id"] in ids(b)


def test_unrelated_nurse_can_neither_read_nor_search_it(w):
    c, n = w
    cid = post(c, condition(by_fnr(OTHER), code="hemmelig-logisk")).json()["id"]
    r = n.get(f"{n.base}/Condition/{cid}")
    assert r.status_code == 404 and "hemmelig-logisk" not in r.text
    for params in ({}, {"_id": cid}, {"code": "hemmelig-logisk"},
                   {"subject:identifier": f"{FNR}|{OTHER}"}, {"_total": "accurate"}):
        r = n.get(f"{n.base}/Condition", params=params)
        assert r.status_code == 200 and cid not in ids(r.json()), (params, r.text)
    r = n.post(f"{n.base}/Condition/_search", data={"code": "hemmelig-logisk"},
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and cid not in ids(r.json())
    r = n.get(f"{n.base}/Patient", params={"_has:Condition:subject:code": "hemmelig-logisk"})
    assert ids(r.json()) == set()
    assert "hemmelig-logisk" not in n.get(f"{n.base}/Patient/mine/$everything").text


def test_personnel_writes_resolve_and_refusals_reveal_no_registration(w):
    _, n = w
    r = post(n, condition(by_fnr(MINE)))  # her own patient: resolved, stored
    assert r.status_code == 201, r.text
    assert r.json()["subject"]["reference"] == "Patient/mine"
    # a registered patient she has no care relation to, and a number no Patient has: the
    # same refusal (the answer must not tell who is registered in the municipality)
    known = post(n, condition(by_fnr(OTHER)))
    unknown = post(n, condition(by_fnr(UNKNOWN)))
    assert known.status_code == unknown.status_code == 403
    assert known.json() == unknown.json()
    assert OTHER not in known.text and UNKNOWN not in unknown.text


def test_a_person_no_patient_has_is_refused_naming_the_element(w):
    c, _ = w
    r = post(c, condition(by_fnr(UNKNOWN)))
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Condition.subject.identifier"]
    assert "fødselsnummer" in issue["diagnostics"] and UNKNOWN not in r.text
    # an identifier of a person on a reference typed as something else
    r = post(c, condition(by_fnr(OTHER, type="Group")))
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == [
        "Condition.subject.type"]
    # nothing was stored
    b = c.get(f"{c.base}/Condition", params={"code": "logisk"}).json()
    assert ids(b) == set()
    # a practitioner named by fødselsnummer (typed) is not a patient: left as it is
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "puls"},
           "subject": {"reference": "Patient/mine"},
           "performer": [{"type": "Practitioner", "identifier": {"system": FNR,
                                                                 "value": UNKNOWN}}]}
    r = post(c, obs)
    assert r.status_code == 201, r.text
    assert "reference" not in r.json()["performer"][0]


def test_a_contained_patient_is_refused(w):
    """A contained Patient as the subject is the same escape (the resource would have no
    patient the policy knows): refused for everyone, naming the element."""
    c, n = w
    res = condition({"reference": "#p"}, contained=[
        {"resourceType": "Patient", "id": "p", "identifier": [{"system": FNR, "value": OTHER}]}])
    for who in (c, n):
        r = post(who, res)
        assert r.status_code == 422, r.text
        assert r.json()["issue"][0]["expression"] == ["Condition.subject.reference"]
    assert ids(c.get(f"{c.base}/Condition", params={"code": "logisk"}).json()) == set()


def test_every_person_identifier_system_and_alias_resolves(w):
    c, _ = w
    d = dnr()
    put(c, {"resourceType": "Patient", "id": "dpas", "identifier": [
        {"system": DNR_SYSTEM, "value": d}]})
    alias = {"identifier": {"system": "http://hl7.no/fhir/NamingSystem/DNR", "value": d},
             "type": "Patient"}
    r = post(c, condition(alias))
    assert r.status_code == 201, r.text
    assert r.json()["subject"]["reference"] == "Patient/dpas"


def test_sperring_applies(w):
    c, n = w
    cid = post(c, condition(by_fnr(MINE), code="sperres")).json()["id"]
    assert n.get(f"{n.base}/Condition/{cid}").status_code == 200
    put(c, sperring("sp-logisk", "mine", **{"class": [{"code": "Condition"}]}))
    r = n.get(f"{n.base}/Condition/{cid}")
    assert r.status_code == 403 and "sperret" in r.text and "sperres" not in r.text
    assert cid not in ids(n.get(f"{n.base}/Condition").json())


def test_it_appears_in_the_citizens_access_log(w, asgi_app, fkj_app, policy_tenant):
    c, n = w
    cid = post(c, condition(by_fnr(OTHER), code="loggfort")).json()["id"]
    doc = personnel(asgi_app, fkj_app, policy_tenant, "vakt", ["lege"], "legevakt", "9333")
    assert doc.post(f"{doc.base}/Patient/other/$akuttilgang", json=REASON).status_code == 200
    assert doc.get(f"{doc.base}/Condition/{cid}").status_code == 200
    assert n.get(f"{n.base}/Condition/{cid}").status_code == 404  # refused: logged too
    me = citizen(asgi_app, fkj_app, policy_tenant, OTHER)
    r = me.get(f"{me.base}/Patient/other/$tilgangslogg")
    assert r.status_code == 200, r.text
    events = [x["event"] for x in audit_rows(fkj_app, policy_tenant, patient="Patient/other")]
    about = [e for e in events if any(x.startswith(f"Condition/{cid}") for x in refs(e))]
    assert [(e["action"], e["outcome"], e["agent"][0]["who"]["identifier"]["value"])
            for e in about] == [("C", "0", "fkj-cli"), ("R", "0", "9333"), ("R", "4", "9111")]
    count = next(p["valueInteger"] for p in r.json()["parameter"] if p["name"] == "count")
    assert count >= 3


def _event_patients(fkj_app, tenant: str, since: int, agent: str) -> list[list[str]]:
    return [refs(r["event"], role="1") for r in audit_rows(fkj_app, tenant)[since:]
            if r["agent"] == agent]


def test_the_audit_names_exactly_the_patients_the_policy_decided_on(w, fkj_app,
                                                                   policy_tenant):
    """An Observation of ``mine`` whose ``focus`` (not a compartment link) is Patient/other:
    the policy decides on {mine}; so does the audit record, for read, search and write."""
    from fkj.repository.patients import patient_refs
    c, n = w
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "fokus"},
           "subject": by_fnr(MINE), "focus": [{"reference": "Patient/other"}]}
    before = len(audit_rows(fkj_app, policy_tenant))
    r = post(n, obs)  # write
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    assert n.get(f"{n.base}/Observation/{oid}").status_code == 200  # read
    r = n.get(f"{n.base}/Observation", params={"_id": oid})  # search
    assert ids(r.json()) == {oid}
    stored = orjson.loads(c.get(f"{c.base}/Observation/{oid}").content)
    assert patient_refs(stored) == ["Patient/mine"]
    assert _event_patients(fkj_app, policy_tenant, before, "9111") == [["Patient/mine"]] * 3
    # a refusal names the patient the policy refused for
    before = len(audit_rows(fkj_app, policy_tenant))
    oc = post(c, condition(by_fnr(OTHER))).json()["id"]
    assert n.get(f"{n.base}/Condition/{oc}").status_code == 404
    assert _event_patients(fkj_app, policy_tenant, before, "9111") == [["Patient/other"]]


def test_a_transaction_registering_the_patient_resolves_within_it(w):
    c, _ = w
    new = fnr(synthetic=False)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Condition"},
         "resource": condition(by_fnr(new), code="samme-bunt")},
        {"fullUrl": "urn:uuid:0b0e6f9a-5d0e-4b44-9a55-0c3e5d9a1f01",
         "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient", "identifier": [{"system": FNR,
                                                                 "value": new}]}}]}
    r = c.post(c.base, json=bundle)
    assert r.status_code == 200, r.text
    pid = r.json()["entry"][1]["response"]["location"].split("/")[-3]
    b = c.get(f"{c.base}/Condition", params={"code": "samme-bunt"}).json()
    assert [x["resource"]["subject"]["reference"] for x in b["entry"]] == [f"Patient/{pid}"]
    # a batch entry with a person no Patient has fails on its own, naming the element
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "POST", "url": "Condition"}, "resource": condition(
            by_fnr(UNKNOWN))}]}
    r = c.post(c.base, json=batch)
    e = r.json()["entry"][0]["response"]
    assert e["status"].startswith("422")
    assert e["outcome"]["issue"][0]["expression"] == ["Bundle.entry[0].resource.subject.identifier"]


def test_data_stored_before_the_rule_concerns_an_unknown_patient(w, asgi_app, fkj_app,
                                                                 policy_tenant, monkeypatch):
    """A resource stored with the reference unresolved (as before this rule) is hidden from
    personnel in both forms of the policy, and still there for system clients."""
    from fkj.repository import patients as P
    from fkj.repository.repository import Repository
    from fkj.types import Principal
    c, n = w
    monkeypatch.setattr(P, "resolve", lambda res, lookup: (res, []))
    repo = Repository(fkj_app.services, Principal.system(policy_tenant), policy_tenant)
    repo.update("Condition", "legacy", condition(by_fnr(MINE), code="gammel", id="legacy"))
    monkeypatch.undo()
    assert "reference" not in c.get(f"{c.base}/Condition/legacy").json()["subject"]
    assert n.get(f"{n.base}/Condition/legacy").status_code == 404
    assert "legacy" not in ids(n.get(f"{n.base}/Condition").json())
    me = citizen(asgi_app, fkj_app, policy_tenant, MINE)
    assert me.get(f"{me.base}/Condition/legacy").status_code == 404
    assert "legacy" not in ids(me.get(f"{me.base}/Condition").json())
