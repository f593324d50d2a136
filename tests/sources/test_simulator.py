"""The national-service simulators' data (in process): the seed's persons of one or several
municipalities, one person per fødselsnummer, and extra facts only the service knows."""

from __future__ import annotations

from starlette.testclient import TestClient

from fkj.seed.generator import generate
from fkj.sources.simulator import Dataset, create_simulator

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"


def _fnr(patient: dict) -> str:
    return next(f"{i['system']}|{i['value']}" for i in patient["identifier"]
                if i["system"].startswith("urn:oid:2.16.578.1.12.4.1.4."))


def test_several_municipalities_and_extra_facts():
    extra = [{"resourceType": "MedicationStatement", "id": "4601-p1-x-1", "status": "active",
              "medicationCodeableConcept": {"text": "Metadon (LAR)"},
              "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                     "code": "SUD"}]},
              "subject": {"reference": "Patient/4601-pat-1"}},
             {"resourceType": "Observation", "id": "4601-p1-x-2", "status": "final",
              "subject": {"reference": "Patient/4601-pat-1"}}]  # not PLL's: left out
    d = Dataset.synthetic("pll", "4601,1804", 3, 42, extra=extra)
    persons = {p["id"] for (t, _), p in d.by_key.items() if t == "Patient"}
    assert {"pll-4601-pat-0", "pll-1804-pat-2"} <= persons
    meds = d.by_patient["pll-4601-pat-1"]
    lar = [m for m in meds if m["id"] == "pll-4601-p1-x-1"]
    assert len(lar) == 1 and lar[0]["subject"]["reference"] == "Patient/pll-4601-pat-1"
    assert lar[0]["meta"]["security"][0]["code"] == "SUD"
    assert ("Observation", "pll-4601-p1-x-2") not in d.by_key

    app = create_simulator("pll", d)
    c = TestClient(app)
    tok = c.post("/token", data={"grant_type": "client_credentials", "client_id": "fkj",
                                 "client_secret": "fkj-secret"}).json()["access_token"]
    p1 = next(r for r in generate("4601", 3, 42) if r["id"] == "4601-pat-1")
    b = c.post("/_search", data={"_type": "MedicationStatement",
                                 "patient:identifier": _fnr(p1)},
               headers={"Authorization": f"Bearer {tok}"}).json()
    assert "pll-4601-p1-x-1" in {e["resource"]["id"] for e in b["entry"]}


def test_one_person_per_fodselsnummer():
    """Two municipalities' patients with the same person number are one person to a national
    service: the second is an alias, its items are found through either."""
    a = next(r for r in generate("4601", 1, 42) if r["resourceType"] == "Patient")
    twin = dict(a, id="9999-pat-0")
    item = {"resourceType": "MedicationStatement", "id": "9999-p0-m", "status": "active",
            "subject": {"reference": "Patient/9999-pat-0"}}
    d = Dataset("pll", [a, twin, item])
    assert d.alias == {"pll-9999-pat-0": "pll-4601-pat-0"}
    assert d.patient_by_identifier[_fnr(a)] == "pll-4601-pat-0"
    assert [m["id"] for m in d.by_patient["pll-4601-pat-0"]] == ["pll-9999-p0-m"]
