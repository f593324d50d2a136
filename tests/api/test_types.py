"""Every resource type the municipality uses: create a realistic Norwegian instance, read it
back, update it, find it by a standard search parameter, delete it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest

from fkj.model.identifiers import FNR_SYSTEM
from tests.api.builders import fnr, match_ids
from tests.api.helpers import FHIR, create

HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"


def cc(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def r(ref: str, display: str | None = None) -> dict:
    out = {"reference": ref}
    if display:
        out["display"] = display
    return out


@pytest.fixture
def refs(client) -> dict[str, str]:
    """The Patient, Practitioner, Organization and Device the other resources point at."""
    pat = create(client, {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": fnr()}],
        "name": [{"family": "Nordmann", "given": ["Kari"]}], "gender": "female",
        "birthDate": "1984-05-17"})
    prac = create(client, {
        "resourceType": "Practitioner", "identifier": [{"system": HPR, "value": "9144889"}],
        "name": [{"family": "Lege", "given": ["Lise"]}]})
    org = create(client, {
        "resourceType": "Organization", "identifier": [{"system": ORGNR, "value": "974760673"}],
        "name": "Testkommune helse og omsorg"})
    dev = create(client, {"resourceType": "Device", "status": "active",
                          "deviceName": [{"name": "Trygghetsalarm", "type": "user-friendly-name"}]})
    return {"patient": f"Patient/{pat['id']}", "practitioner": f"Practitioner/{prac['id']}",
            "organization": f"Organization/{org['id']}", "device": f"Device/{dev['id']}"}


@dataclass
class TypeCase:
    rtype: str
    build: Callable[[dict], dict]
    #: (search parameter, value) given the refs and the created resource
    search: Callable[[dict, dict], tuple[str, str]]


def by_patient(param: str = "patient"):
    return lambda refs, res: (param, refs["patient"])


def by_id(refs, res):
    return ("_id", res["id"])


CASES = [
    TypeCase("Patient", lambda x: {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": fnr(date(1951, 2, 3))}],
        "active": True, "name": [{"use": "official", "family": "Bakken", "given": ["Per", "Ole"]}],
        "telecom": [{"system": "phone", "value": "+47 22 33 44 55", "use": "home"}],
        "gender": "male", "birthDate": "1951-02-03",
        "address": [{"line": ["Storgata 1"], "postalCode": "0155", "city": "Oslo",
                     "country": "NO"}],
        "communication": [{"language": cc("urn:ietf:bcp:47", "nb", "Norsk bokmål")}],
        "generalPractitioner": [r(x["practitioner"])]},
        lambda x, res: ("identifier", f"{FNR_SYSTEM}|{res['identifier'][0]['value']}")),
    TypeCase("Practitioner", lambda x: {
        "resourceType": "Practitioner", "identifier": [{"system": HPR, "value": "565501872"}],
        "active": True, "name": [{"family": "Sykepleier", "given": ["Siri"]}],
        "qualification": [{"code": cc("urn:oid:2.16.578.1.12.4.1.1.9060", "SP", "Sykepleier")}]},
        lambda x, res: ("identifier", f"{HPR}|565501872")),
    TypeCase("PractitionerRole", lambda x: {
        "resourceType": "PractitionerRole", "active": True,
        "practitioner": r(x["practitioner"]), "organization": r(x["organization"]),
        "code": [cc("urn:oid:2.16.578.1.12.4.1.1.9060", "LE", "Lege")]},
        lambda x, res: ("practitioner", x["practitioner"])),
    TypeCase("Organization", lambda x: {
        "resourceType": "Organization", "identifier": [{"system": ORGNR, "value": "921234568"}],
        "active": True, "name": "Hjemmetjenesten Sone Nord",
        "partOf": r(x["organization"]),
        "address": [{"line": ["Rådhusgata 5"], "postalCode": "5014", "city": "Bergen"}]},
        lambda x, res: ("identifier", f"{ORGNR}|921234568")),
    TypeCase("HealthcareService", lambda x: {
        "resourceType": "HealthcareService", "active": True, "providedBy": r(x["organization"]),
        "name": "Hjemmesykepleie", "type": [cc(SNOMED, "385763009", "Hjemmesykepleie")]},
        lambda x, res: ("organization", x["organization"])),
    TypeCase("Location", lambda x: {
        "resourceType": "Location", "status": "active", "name": "Solheim sykehjem, avdeling 2",
        "managingOrganization": r(x["organization"]),
        "address": {"line": ["Solheimsveien 10"], "postalCode": "7030", "city": "Trondheim"}},
        lambda x, res: ("organization", x["organization"])),
    TypeCase("ServiceRequest", lambda x: {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "subject": r(x["patient"]), "requester": r(x["practitioner"]),
        "code": cc(SNOMED, "225358003", "Sårstell"), "authoredOn": "2024-03-01"},
        by_patient("subject")),
    TypeCase("EpisodeOfCare", lambda x: {
        "resourceType": "EpisodeOfCare", "status": "active", "patient": r(x["patient"]),
        "managingOrganization": r(x["organization"]),
        "period": {"start": "2024-01-15"}},
        by_patient()),
    TypeCase("CareTeam", lambda x: {
        "resourceType": "CareTeam", "status": "active", "name": "Ansvarsgruppe Kari Nordmann",
        "subject": r(x["patient"]),
        "participant": [{"member": r(x["practitioner"])}]},
        by_patient("subject")),
    TypeCase("AllergyIntolerance", lambda x: {
        "resourceType": "AllergyIntolerance", "patient": r(x["patient"]),
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                             "active", "Active"),
        "code": cc(SNOMED, "91936005", "Penicillinallergi"), "criticality": "high"},
        by_patient()),
    TypeCase("Consent", lambda x: {
        "resourceType": "Consent", "status": "active", "patient": r(x["patient"]),
        "scope": cc("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy",
                    "Privacy Consent"),
        "category": [cc(LOINC, "59284-0", "Samtykke")], "dateTime": "2024-02-01T10:00:00+01:00",
        "policyRule": cc("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN", "opt-in")},
        by_patient()),
    TypeCase("Condition", lambda x: {
        "resourceType": "Condition", "subject": r(x["patient"]),
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical",
                             "active", "Active"),
        "code": cc("urn:oid:2.16.578.1.12.4.1.1.7170", "T90", "Diabetes type 2"),
        "onsetDateTime": "2019-06-01"},
        by_patient("subject")),
    TypeCase("Procedure", lambda x: {
        "resourceType": "Procedure", "status": "completed", "subject": r(x["patient"]),
        "code": cc(SNOMED, "225358003", "Sårstell"), "performedDateTime": "2024-03-02T09:30:00+01:00",
        "performer": [{"actor": r(x["practitioner"])}]},
        by_patient()),
    TypeCase("DeviceUseStatement", lambda x: {
        "resourceType": "DeviceUseStatement", "status": "active", "subject": r(x["patient"]),
        "device": r(x["device"]), "timingDateTime": "2024-01-10"},
        by_patient("subject")),
    TypeCase("Flag", lambda x: {
        "resourceType": "Flag", "status": "active", "subject": r(x["patient"]),
        "code": {"text": "Hund i huset - ring før besøk"}},
        by_patient()),
    TypeCase("Encounter", lambda x: {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH",
                  "display": "home health"},
        "subject": r(x["patient"]), "serviceProvider": r(x["organization"]),
        "period": {"start": "2024-03-02T09:00:00+01:00", "end": "2024-03-02T09:45:00+01:00"}},
        by_patient()),
    TypeCase("MedicationStatement", lambda x: {
        "resourceType": "MedicationStatement", "status": "active", "subject": r(x["patient"]),
        "medicationCodeableConcept": cc(ATC, "A10BA02", "Metformin"),
        "dosage": [{"text": "500 mg morgen og kveld"}]},
        by_patient()),
    TypeCase("MedicationRequest", lambda x: {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": r(x["patient"]), "requester": r(x["practitioner"]),
        "medicationCodeableConcept": cc(ATC, "N02BE01", "Paracetamol"),
        "authoredOn": "2024-03-01"},
        by_patient()),
    TypeCase("MedicationAdministration", lambda x: {
        "resourceType": "MedicationAdministration", "status": "completed",
        "subject": r(x["patient"]),
        "medicationCodeableConcept": cc(ATC, "N02BE01", "Paracetamol"),
        "effectiveDateTime": "2024-03-02T08:00:00+01:00",
        "dosage": {"text": "1 g", "dose": {"value": 1, "unit": "g", "system": UCUM, "code": "g"}}},
        by_patient()),
    TypeCase("Observation", lambda x: {
        "resourceType": "Observation", "status": "final",
        "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category",
                        "vital-signs", "Vital Signs")],
        "code": cc(LOINC, "8867-4", "Puls"), "subject": r(x["patient"]),
        "effectiveDateTime": "2024-03-02T09:10:00+01:00",
        "valueQuantity": {"value": 72, "unit": "slag/min", "system": UCUM, "code": "/min"}},
        lambda x, res: ("code", f"{LOINC}|8867-4")),
    TypeCase("DiagnosticReport", lambda x: {
        "resourceType": "DiagnosticReport", "status": "final", "subject": r(x["patient"]),
        "code": cc(LOINC, "4548-4", "HbA1c"), "effectiveDateTime": "2024-02-20",
        "conclusion": "HbA1c 53 mmol/mol"},
        by_patient()),
    TypeCase("QuestionnaireResponse", lambda x: {
        "resourceType": "QuestionnaireResponse", "status": "completed", "subject": r(x["patient"]),
        "questionnaire": "https://fkj.example.no/Questionnaire/iplos-kartlegging",
        "authored": "2024-03-01T12:00:00+01:00",
        "item": [{"linkId": "1", "text": "Klarer seg selv ved påkledning?",
                  "answer": [{"valueBoolean": True}]}]},
        by_patient("subject")),
    TypeCase("Device", lambda x: {
        "resourceType": "Device", "status": "active",
        "identifier": [{"system": "https://fkj.example.no/hjelpemiddel", "value": "HM-2024-0042"}],
        "deviceName": [{"name": "Rullator", "type": "user-friendly-name"}],
        "patient": r(x["patient"]), "owner": r(x["organization"])},
        lambda x, res: ("identifier", "https://fkj.example.no/hjelpemiddel|HM-2024-0042")),
    TypeCase("DocumentReference", lambda x: {
        "resourceType": "DocumentReference", "status": "current", "subject": r(x["patient"]),
        "type": cc(LOINC, "34133-9", "Epikrise"),
        "content": [{"attachment": {"contentType": "text/plain", "language": "nb",
                                    "data": base64.b64encode(b"Epikrise fra sykehus").decode(),
                                    "title": "Epikrise"}}]},
        by_patient()),
    TypeCase("Binary", lambda x: {
        "resourceType": "Binary", "contentType": "text/plain",
        "data": base64.b64encode(b"Vedtak om hjemmesykepleie").decode()},
        by_id),
    TypeCase("RelatedPerson", lambda x: {
        "resourceType": "RelatedPerson", "active": True, "patient": r(x["patient"]),
        "relationship": [cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "DAU", "datter")],
        "name": [{"family": "Nordmann", "given": ["Ingrid"]}],
        "telecom": [{"system": "phone", "value": "+47 90 12 34 56"}]},
        by_patient()),
    TypeCase("Provenance", lambda x: {
        "resourceType": "Provenance", "target": [r(x["patient"])],
        "recorded": "2024-03-02T10:00:00+01:00",
        "agent": [{"who": r(x["practitioner"])}]},
        lambda x, res: ("target", x["patient"])),
]

assert len({c.rtype for c in CASES}) == 27  # + AuditEvent, append-only (below)


@pytest.mark.parametrize("case", CASES, ids=[c.rtype for c in CASES])
def test_type_lifecycle(client, refs, case):
    base = f"{client.base}/{case.rtype}"
    resource = case.build(refs)
    # create
    r = client.post(base, json=resource, headers=FHIR)
    assert r.status_code == 201, r.text
    created = r.json()
    rid = created["id"]
    assert created["resourceType"] == case.rtype and created["meta"]["versionId"] == "1"
    for k, v in resource.items():
        assert created[k] == v, k
    # read back equal
    got = client.get(f"{base}/{rid}")
    assert got.status_code == 200, got.text
    assert got.json() == created
    # update
    changed = {**{k: v for k, v in created.items() if k != "meta"}, "language": "nb-NO"}
    u = client.put(f"{base}/{rid}", json=changed, headers={**FHIR, "If-Match": 'W/"1"'})
    assert u.status_code == 200, u.text
    assert u.json()["meta"]["versionId"] == "2" and u.json()["language"] == "nb-NO"
    current = client.get(f"{base}/{rid}").json()
    assert current == u.json()
    assert client.get(f"{base}/{rid}/_history/1").json() == created
    # search
    param, value = case.search(refs, created)
    s = client.get(base, params={param: value})
    assert s.status_code == 200, s.text
    assert rid in match_ids(s.json()), (param, value, s.json())
    other = client.get(base, params={param: value + "-ingen" if param != "_id" else "ingen"})
    assert rid not in match_ids(other.json())
    # delete
    d = client.delete(f"{base}/{rid}")
    assert d.status_code in (200, 204), d.text
    gone = client.get(f"{base}/{rid}")
    assert gone.status_code == 410, gone.text
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert rid not in match_ids(client.get(base, params={param: value}).json())


def _audit_event(x):
    return ({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                 "code": "rest", "display": "RESTful Operation"},
        "action": "R", "recorded": "2024-03-02T10:00:00+01:00", "outcome": "0",
        "agent": [{"who": r(x["practitioner"]), "requestor": True}],
        "source": {"observer": r(x["organization"])},
        "entity": [{"what": r(x["patient"])}]})


def test_audit_events_are_append_only_through_the_api(client, refs):
    """AuditEvents are written by the server itself: the REST API refuses to create, change,
    delete or read them (the log is read through $tilgangslogg)."""
    base = f"{client.base}/AuditEvent"
    r = client.post(base, json=_audit_event(refs), headers=FHIR)
    assert r.status_code == 405, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    r = client.put(f"{base}/x1", json={**_audit_event(refs), "id": "x1"}, headers=FHIR)
    assert r.status_code == 405, r.text
    assert client.delete(f"{base}/x1").status_code == 405
    assert client.get(base).status_code == 403
