"""The access policy (tjenstlig behov) on ``$oversikt`` for federated items exactly as for
local ones: care relation, emergency access, sperring (by type, by label, by a named local
record) and sensitive labels — and the overview audited as one access listing every
resource shown, never a hidden one.

The national services run as separate simulator processes holding the seed's persons plus
two facts only they know (``--extra``): a Kjernejournal Flag labelled PSY and a PLL
MedicationStatement (LAR) labelled SUD, both for the HLR-minus story patient (seed patient 0).
"""

from __future__ import annotations

import orjson
import pytest
from starlette.testclient import TestClient

from fkj.sources.base import item_sources
from tests.views.conftest import PATIENTS, configure, headers, overview, section_items, seed

ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
KRITISK = "urn:oid:2.16.578.1.12.4.1.1.7650"
BLOCKED = "noe informasjon er sperret av pasienten"
KINDS = ("kjernejournal", "pll", "provesvar")


def _extra(t: str) -> list[dict]:
    pid = f"Patient/{t}-pat-0"
    return [
        {"resourceType": "Flag", "id": f"{t}-p0-x-flag-psy",
         "meta": {"security": [{"system": ACTCODE, "code": "PSY"}]},
         "status": "active",
         "category": [{"coding": [{"system": KRITISK, "code": "9",
                                   "display": "Annen kritisk informasjon"}]}],
         "code": {"text": "Kjent selvmordsfare - følg kriseplanen"},
         "subject": {"reference": pid}},
        {"resourceType": "MedicationStatement", "id": f"{t}-p0-x-lar",
         "meta": {"security": [{"system": ACTCODE, "code": "SUD"}]},
         "status": "active",
         "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc",
                                                   "code": "N07BC02", "display": "Metadon"}],
                                       "text": "Metadon (LAR)"},
         "subject": {"reference": pid},
         "dosage": [{"text": "60 mg daglig"}]},
    ]


@pytest.fixture(scope="module")
def world(db, views_app, simulators, tmp_path_factory):
    """A tenant of its own (these tests write sperringer) with the policy gated to it, the
    audit log wired, and the three simulators (with the extra facts) as its sources."""
    from fkj.security.audit.wiring import register_audit
    from fkj.security.policy import register_policy

    t = seed(db, views_app)
    register_policy(views_app, tenants={t})
    register_audit(views_app)
    path = tmp_path_factory.mktemp("extra") / f"{t}.json"
    path.write_bytes(orjson.dumps(_extra(t)))
    sims = {k: simulators.get(k, t, PATIENTS, extra=str(path)) for k in KINDS}
    configure(views_app.services.engine, t,
              [s.config(cache_ttl_s=0, breaker_threshold=1000) for s in sims.values()])
    return t, sims


def _client(asgi_app) -> TestClient:
    return TestClient(asgi_app, base_url="http://testserver")


def clinician(fkj, t: str, role: str, unit: str = "sone-1", hpr: str = "9100001") -> dict:
    """Personnel of a unit; ``sone-1`` delivers patient 0's home nursing (a care relation)."""
    return headers(fkj, t, "user/*.rs", kind="practitioner", subject=f"helseid-{hpr}-{role}",
                   hpr_number=hpr, roles=[role], unit=f"Organization/{t}-org-{unit}",
                   fhir_user=f"Practitioner/{role}-{hpr}", client_id="vendor-epj")


def emergency(c, fkj, t: str, pid: str, hpr: str) -> dict:
    """A legevakt physician without a care relation: refused, then opens the record with
    ``$akuttilgang``; returns the headers of her requests."""
    h = clinician(fkj, t, "lege", unit="legevakt", hpr=hpr)
    assert overview(c, t, pid, h).status_code == 404  # no relation: as if not there
    r = c.post(f"/fhir/{t}/Patient/{pid}/$akuttilgang", headers=h, json={
        "resourceType": "Parameters",
        "parameter": [{"name": "reason", "valueString": "bevisstløs pasient på legevakten"}]})
    assert r.status_code == 200, r.text
    return h


def _items(b: dict) -> list[dict]:
    return [e["resource"] for e in b["entry"][2:]
            if e["resource"]["resourceType"] not in ("Provenance", "OperationOutcome")]


def _notices(b: dict) -> list[dict]:
    return [i for e in b["entry"] if e["resource"]["resourceType"] == "OperationOutcome"
            for i in e["resource"]["issue"] if i["code"] == "suppressed"]


def _from(res: dict, sim) -> bool:
    return sim.url in {u for u, _ in item_sources(res)}


def _sperring(c, t: str, system: dict, **provision) -> str:
    r = c.post(f"/fhir/{t}/Consent", headers=system, json={
        "resourceType": "Consent",
        "meta": {"tag": [{"system": "http://fkj.no/fhir/CodeSystem/consent-kind",
                          "code": "sperring"}]},
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{t}-pat-0"},
        "policyRule": {"coding": [{"system": ACTCODE, "code": "OPTOUT"}]},
        "provision": {"type": "deny", "period": {"start": "2020-01-01"}, **provision}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _withdraw(c, t: str, system: dict, cid: str) -> None:
    assert c.delete(f"/fhir/{t}/Consent/{cid}", headers=system).status_code in (200, 204)


# ------------------------------------------------------------------------------ care relation
def test_unrelated_practitioner_gets_404_and_nothing_federated(asgi_app, views_app, world):
    t, sims = world
    c = _client(asgi_app)
    r = overview(c, t, f"{t}-pat-0", clinician(views_app, t, "lege", unit="legevakt"))
    # answered as a patient that is not there (no existence oracle), pointing to $akuttilgang
    assert r.status_code == 404, r.text
    absent = overview(c, t, f"{t}-pat-x", clinician(views_app, t, "lege", unit="legevakt"))
    assert absent.status_code == 404
    assert r.text.replace(f"{t}-pat-0", "ID") == absent.text.replace(f"{t}-pat-x", "ID")
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "tjenstlig behov" in r.text and "$akuttilgang" in r.text
    for leak in ("HLR", "Metadon", "selvmord", "kj-", "pll-", *(s.url for s in sims.values())):
        assert leak not in r.text


# ------------------------------------------------------------------------------ sensitive labels
def test_sensitive_federated_items_hidden_for_a_role_that_may_not_see_them(asgi_app, views_app,
                                                                         world):
    """PSY/SUD labels: a doctor sees them in any unit; a home-care nurse (not a home unit of
    the label) does not — for the items of Kjernejournal and PLL as for local records."""
    t, sims = world
    c = _client(asgi_app)
    pid = f"{t}-pat-0"
    doctor = overview(c, t, pid, clinician(views_app, t, "lege")).json()
    flag = [x for x in section_items(doctor, "kritisk") if x["resourceType"] == "Flag"]
    assert len(flag) == 1 and _from(flag[0], sims["kjernejournal"])
    assert flag[0]["subject"]["reference"] == f"Patient/{pid}"  # the local patient
    lar = [x for x in section_items(doctor, "legemidler")
           if "Metadon" in x["medicationCodeableConcept"]["text"]]
    assert len(lar) == 1 and _from(lar[0], sims["pll"])
    assert not _notices(doctor)

    nurse = overview(c, t, pid, clinician(views_app, t, "sykepleier", hpr="9100002"))
    assert nurse.status_code == 200, nurse.text
    b = nurse.json()
    assert not any(x.get("meta", {}).get("security") for x in _items(b))
    assert "Metadon" not in nurse.text and "selvmord" not in nurse.text
    assert "N07BC02" not in nurse.text
    # … while she still sees the rest, federated included
    assert section_items(b, "kritisk")[0]["provision"]["code"][0]["text"] == "HLR-minus"
    meds = section_items(b, "legemidler")
    assert meds and all(_from(m, sims["pll"]) for m in meds)
    assert not _notices(b)  # a sensitivity rule is not a sperring


# ------------------------------------------------------------------------------ sperring
def test_sperring_by_type_hides_the_federated_item_too(asgi_app, views_app, world):
    """The patient blocks AllergyIntolerance: neither the local allergy nor Kjernejournal's
    copy is shown — to her care team's doctor nor to the legevakt physician with emergency
    access — and the overview says only that blocked information exists. The audit record
    lists every resource shown and none of the hidden ones. (Budget 5 s: this test is about
    the policy, and a loaded machine must not drop Kjernejournal's answer.)"""
    from tests.auditflow.conftest import audit_rows, refs

    t, sims = world
    c = _client(asgi_app)
    pid = f"{t}-pat-0"
    system = headers(views_app, t, "system/*.cruds")
    # the system client (not under the policy) sees the allergy from both sources
    b = overview(c, t, pid, system, _budget="5000").json()
    allergy = [x for x in section_items(b, "kritisk") if x["resourceType"] == "AllergyIntolerance"]
    assert len(allergy) == 1 and _from(allergy[0], sims["kjernejournal"])
    assert len(item_sources(allergy[0])) == 2

    cid = _sperring(c, t, system, **{"class": [{
        "system": "http://hl7.org/fhir/resource-types", "code": "AllergyIntolerance"}]})
    try:
        doctor = clinician(views_app, t, "lege")
        btg = emergency(c, views_app, t, pid, hpr="9200001")
        before = len(audit_rows(views_app, t))
        for who in (doctor, btg):
            r = overview(c, t, pid, who, _budget="5000")
            assert r.status_code == 200, r.text
            b = r.json()
            assert not any(x["resourceType"] == "AllergyIntolerance" for x in _items(b))
            assert "penicillin" not in r.text.lower() and "AllergyIntolerance" not in r.text
            notes = _notices(b)
            assert len(notes) == 1 and notes[0]["details"]["text"] == BLOCKED
            assert notes[0]["severity"] == "information" and "diagnostics" not in notes[0]
            assert BLOCKED in b["entry"][0]["resource"]["text"]["div"].lower()
            # the treatment limit is still at the top, and Kjernejournal still contributes
            first = section_items(b, "kritisk")[0]
            assert first["provision"]["code"][0]["text"] == "HLR-minus"
            assert _from(first, sims["kjernejournal"])
        # the emergency access is audited as ONE access (purpose BTG) listing what was shown
        rows = [x for x in audit_rows(views_app, t)[before:] if x["agent"] == "9200001"]
        assert [x["subtype"] for x in rows] == ["$oversikt"]
        event = rows[0]["event"]
        assert "BTG" in rows[0]["purpose"]
        listed = {x.split("/_history/")[0] for x in refs(event)}
        for e in b["entry"][1:]:
            res = e["resource"]
            if res["resourceType"] in ("Provenance", "OperationOutcome"):
                continue
            assert f"{res['resourceType']}/{res['id']}" in listed or e["fullUrl"] in listed, \
                e["fullUrl"]
        assert not any("AllergyIntolerance" in x for x in listed)
        assert refs(event, role="1") == [f"Patient/{pid}"]
    finally:
        _withdraw(c, t, system, cid)
    b = overview(c, t, pid, clinician(views_app, t, "lege")).json()
    assert any(x["resourceType"] == "AllergyIntolerance" for x in _items(b))
    assert not _notices(b)


def test_sperring_by_label_hides_the_federated_item(asgi_app, views_app, world):
    """The patient blocks PSY-labelled information: the doctor (who may see PSY) no longer
    gets Kjernejournal's PSY flag, only the notice."""
    t, _ = world
    c = _client(asgi_app)
    pid = f"{t}-pat-0"
    system = headers(views_app, t, "system/*.cruds")
    doctor = clinician(views_app, t, "lege", hpr="9100003")
    assert any(x["resourceType"] == "Flag" for x in _items(overview(c, t, pid, doctor).json()))
    cid = _sperring(c, t, system, securityLabel=[{"system": ACTCODE, "code": "PSY"}])
    try:
        r = overview(c, t, pid, doctor)
        b = r.json()
        assert not any(x["resourceType"] == "Flag" for x in _items(b))
        assert "selvmord" not in r.text
        assert [n["details"]["text"] for n in _notices(b)] == [BLOCKED]
        # other federated items (not labelled PSY) are still there, SUD included for a doctor
        assert any("Metadon" in x["medicationCodeableConcept"]["text"]
                   for x in section_items(b, "legemidler"))
    finally:
        _withdraw(c, t, system, cid)


def test_sperring_of_a_local_record_hides_the_same_fact_from_a_national_service(
        asgi_app, views_app, world):
    """A sperring naming the local allergy record (provision.data) also hides Kjernejournal's
    statement of the same allergy."""
    t, _ = world
    c = _client(asgi_app)
    pid = f"{t}-pat-0"
    system = headers(views_app, t, "system/*.cruds")
    local = c.get(f"/fhir/{t}/AllergyIntolerance", params={"patient": pid},
                  headers=system).json()["entry"][0]["resource"]
    cid = _sperring(c, t, system, data=[{"meaning": "instance", "reference": {
        "reference": f"AllergyIntolerance/{local['id']}"}}])
    try:
        r = overview(c, t, pid, clinician(views_app, t, "lege", hpr="9100004"))
        b = r.json()
        assert not any(x["resourceType"] == "AllergyIntolerance" for x in _items(b))
        assert "penicillin" not in r.text.lower()
        assert [n["details"]["text"] for n in _notices(b)] == [BLOCKED]
        assert any(x["resourceType"] == "Flag" for x in _items(b))  # the rest is shown
    finally:
        _withdraw(c, t, system, cid)
