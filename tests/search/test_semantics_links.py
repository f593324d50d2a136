"""Search semantics through HTTP: chained parameters (to depth 6), reverse chaining (_has,
nested), compartments, Patient/$everything, _include/_revinclude (:iterate, *)."""

from __future__ import annotations

from tests.search.semantics_helpers import check_table, ids, put_all, search

LOINC = "http://loinc.org"


def _data():
    def ref(x):
        return {"reference": x}
    return [
        {"resourceType": "Organization", "id": "top", "name": "Helse Vest",
         "identifier": [{"system": "http://orgnr", "value": "T1"}]},
        {"resourceType": "Organization", "id": "mid", "name": "Helse Bergen",
         "partOf": ref("Organization/top")},
        {"resourceType": "Organization", "id": "low", "name": "Legekontor",
         "partOf": ref("Organization/mid")},
        {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Doktor"}]},
        {"resourceType": "Medication", "id": "med", "code": {"coding": [{"system": "http://atc",
                                                                         "code": "N02"}]}},
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Hansen"}],
         "identifier": [{"system": "http://mrn", "value": "1"}],
         "managingOrganization": ref("Organization/low"),
         "generalPractitioner": [ref("Practitioner/dr")]},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Olsen"}],
         "identifier": [{"system": "http://mrn", "value": "2"}],
         "managingOrganization": ref("Organization/top"),
         "link": [{"other": ref("Patient/p1"), "type": "seealso"}]},
        {"resourceType": "Patient", "id": "p3", "name": [{"family": "Berg"}]},
        {"resourceType": "Encounter", "id": "e1", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": ref("Patient/p1"), "serviceProvider": ref("Organization/low")},
        {"resourceType": "Observation", "id": "o1", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
         "subject": ref("Patient/p1"), "encounter": ref("Encounter/e1"),
         "performer": [ref("Practitioner/dr")]},
        {"resourceType": "Observation", "id": "o2", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "2345-7"}]},
         "subject": ref("Patient/p2")},
        {"resourceType": "Observation", "id": "o3", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
         "subject": ref("Patient/p3"), "hasMember": [ref("Observation/o1")]},
        {"resourceType": "Condition", "id": "c1", "subject": ref("Patient/p1"),
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}},
        {"resourceType": "MedicationRequest", "id": "mr1", "status": "active",
         "intent": "order", "subject": ref("Patient/p1"),
         "medicationReference": ref("Medication/med"), "requester": ref("Practitioner/dr")},
        {"resourceType": "Provenance", "id": "prov1", "recorded": "2024-01-01T00:00:00Z",
         "target": [ref("Observation/o1")], "agent": [{"who": ref("Practitioner/dr")}]},
    ]


def test_chains_and_reverse_chains(client):
    put_all(client, _data())
    check_table(client, "Observation", [
        ("subject:Patient.identifier=http://mrn|1", {"o1"}),
        ("subject.identifier=http://mrn|1,http://mrn|2", {"o1", "o2"}),
        ("subject.name=hansen", {"o1"}),
        ("patient.name=olsen", {"o2"}),
        ("subject:Patient.organization.name=legekontor", {"o1"}),
        ("subject:Patient.organization.partof.name=helse bergen", {"o1"}),
        ("subject:Patient.organization.partof.partof.identifier=T1", {"o1"}),
        # depth 6: Observation → Encounter → Patient → Organization → … → Organization
        ("encounter.subject:Patient.organization.partof.partof.identifier=http://orgnr|T1",
         {"o1"}),
        ("encounter.patient.organization.partof.partof.name:exact=Helse Vest", {"o1"}),
        ("subject:Patient.organization.name=legekontor,helse vest", {"o1", "o2"}),
        ("subject.name=hansen&code=2345-7", set()),
        ("subject.name:missing=false", {"o1", "o2", "o3"}),
        ("subject:Patient.link:Patient.name=hansen", {"o2"}),
        ("has-member.subject.name=hansen", {"o3"}),
        ("_has:Provenance:target:agent=Practitioner/dr", {"o1"}),
        ("_has:Provenance:target:agent.name=doktor", {"o1"}),
        ("_has:Observation:has-member:code=8480-6", {"o1"}),
    ])
    check_table(client, "Patient", [
        ("_has:Observation:subject:code=8480-6", {"p1", "p3"}),
        ("_has:Observation:subject:code=http://loinc.org|2345-7", {"p2"}),
        ("_has:Observation:patient:code=8480-6,2345-7", {"p1", "p2", "p3"}),
        ("_has:Observation:subject:code=8480-6&_has:Condition:subject:code=38341003", {"p1"}),
        ("_has:Observation:subject:_has:Provenance:target:agent=Practitioner/dr", {"p1"}),
        ("_has:Observation:subject:performer.name=doktor", {"p1"}),
        ("_has:Observation:subject:code:not=8480-6", {"p2"}),
        ("_has:MedicationRequest:subject:medication.code=N02", {"p1"}),
        ("organization.partof=Organization/mid", {"p1"}),
        ("organization.partof=Organization/top", set()),
        ("organization:Organization.name=helse", {"p2"}),
        ("link:Patient._has:Observation:subject:code=8480-6", {"p2"}),
    ])


def test_compartment_search(client):
    put_all(client, _data())
    bad = []
    for path, expected in [
        ("Patient/p1/Observation", {"o1"}),
        ("Patient/p1/Observation?code=8480-6", {"o1"}),
        ("Patient/p1/Observation?code=2345-7", set()),
        ("Patient/p2/Observation", {"o2"}),
        ("Patient/p1/Condition", {"c1"}),
        ("Patient/p1/Encounter", {"e1"}),
        ("Patient/p1/MedicationRequest", {"mr1"}),
        ("Patient/p1/Patient", {"p1", "p2"}),            # itself and (via link) p2
        ("Patient/p9/Observation", set()),
        ("Practitioner/dr/Observation", {"o1"}),
        ("Practitioner/dr/MedicationRequest", {"mr1"}),
        ("Encounter/e1/Observation", {"o1"}),
    ]:
        r = client.get(f"{client.base}/{path}")
        if r.status_code != 200 or ids(r.json()) != expected:
            bad.append((path, r.status_code, r.text[:200] if r.status_code != 200
                        else sorted(ids(r.json()))))
    assert not bad, bad
    r = client.get(f"{client.base}/Patient/p1/Organization")  # not in the compartment
    assert r.status_code == 400


def test_patient_everything(client):
    put_all(client, _data())
    r = client.get(f"{client.base}/Patient/p1/$everything")
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["type"] == "searchset"
    assert ids(b) == {"p1", "p2", "e1", "o1", "c1", "mr1"}
    # referenced resources outside any patient's compartment come along as includes
    assert ids(b, "include") == {"dr", "low", "med", "top"}  # top: p2 (linked)
    # _type
    r = client.get(f"{client.base}/Patient/p1/$everything", params={"_type": "Observation"})
    assert ids(r.json()) == {"o1"} and ids(r.json(), "include") == set()
    r = client.get(f"{client.base}/Patient/p1/$everything",
                   params={"_type": "Observation,Practitioner"})
    assert ids(r.json()) == {"o1"} and ids(r.json(), "include") == {"dr"}
    # _since: nothing changed after now
    r = client.get(f"{client.base}/Patient/p1/$everything",
                   params={"_since": "2999-01-01T00:00:00Z"})
    assert ids(r.json()) == set()
    r = client.get(f"{client.base}/Patient/p1/$everything",
                   params={"_since": "2000-01-01T00:00:00Z"})
    assert ids(r.json()) == {"p1", "p2", "e1", "o1", "c1", "mr1"}
    # paging: _count=2 gives next links until every resource was seen exactly once
    seen, url, pages = [], f"{client.base}/Patient/p1/$everything?_count=2", 0
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        b = r.json()
        seen += [e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "match"]
        nxt = [x["url"] for x in b.get("link", []) if x["relation"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
        pages += 1
    assert sorted(seen) == sorted(["p1", "p2", "e1", "o1", "c1", "mr1"]) and pages == 3
    assert client.get(f"{client.base}/Patient/nobody/$everything").status_code == 404
    r = client.get(f"{client.base}/Patient/p1/$everything", params={"_since": "garbage"})
    assert r.status_code == 400


def test_include_and_revinclude(client):
    put_all(client, _data())

    def run(query):
        r = search(client, "Observation" if not query.startswith("P:") else "Patient",
                   query.removeprefix("P:"))
        assert r.status_code == 200, r.text
        return ids(r.json()), ids(r.json(), "include")

    assert run("_id=o1&_include=Observation:subject") == ({"o1"}, {"p1"})
    assert run("_id=o1&_include=Observation:subject:Patient") == ({"o1"}, {"p1"})
    assert run("_id=o1&_include=Observation:subject:Group") == ({"o1"}, set())
    assert run("_id=o1&_include=Observation:subject&_include=Observation:performer") == (
        {"o1"}, {"p1", "dr"})
    assert run("_id=o1&_include=*") == ({"o1"}, {"p1", "dr", "e1"})
    # without :iterate the Patient's organization is not followed; with it, it is
    assert run("_id=o1&_include=Observation:subject&_include=Patient:organization") == (
        {"o1"}, {"p1"})
    assert run("_id=o1&_include=Observation:subject&_include:iterate=Patient:organization") \
        == ({"o1"}, {"p1", "low"})
    assert run("_id=o1&_include=Observation:subject&_include:iterate=Patient:organization"
               "&_include:iterate=Organization:partof") == ({"o1"}, {"p1", "low", "mid", "top"})
    assert run("P:_id=p1&_revinclude=Observation:subject") == ({"p1"}, {"o1"})
    assert run("P:_id=p1&_revinclude=Observation:subject&_revinclude:iterate=Provenance:target") \
        == ({"p1"}, {"o1", "prov1"})
    assert run("P:_id=p1&_revinclude=*") == ({"p1"}, {"o1", "c1", "mr1", "e1", "p2"})
    assert run("P:_id=p1&_revinclude=Observation:subject&_include=Patient:general-practitioner") \
        == ({"p1"}, {"o1", "dr"})
    # an included resource that is also a match appears once, as a match
    assert run("code=8480-6&_include=Observation:has-member") == ({"o1", "o3"}, set())
