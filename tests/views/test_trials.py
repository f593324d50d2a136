"""Trials U-1 (municipal services) and U-2 (imported history), and the access policy of the
overview for local and federated data."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.views.conftest import (
    PATIENTS,
    configure,
    headers,
    overview,
    section,
    section_items,
    seed,
)


def vendor(tenant: str) -> dict:
    """A vendor's journal system used by a nurse of home-care zone 1, the unit that delivers
    the services of seed patients 0 and 3 (her care relation under the access policy)."""
    return {"kind": "practitioner", "subject": "Practitioner/vendor-test",
            "client_id": "vendor-epj", "hpr_number": "9000001", "roles": ["sykepleier"],
            "fhir_user": "Practitioner/vendor-test", "unit": f"Organization/{tenant}-org-sone-1"}


def on_care_team(c, tenant: str, pid: str, system: dict) -> None:
    """Put the vendor's nurse on the patient's care team (a care relation whatever unit
    serves the patient in this seed)."""
    r = c.put(f"/fhir/{tenant}/Practitioner/vendor-test", headers=system, json={
        "resourceType": "Practitioner", "id": "vendor-test", "name": [{"family": "Leverandør"}]})
    assert r.status_code in (200, 201), r.text
    r = c.post(f"/fhir/{tenant}/CareTeam", headers=system, json={
        "resourceType": "CareTeam", "status": "active", "subject": {"reference": f"Patient/{pid}"},
        "participant": [{"member": {"reference": "Practitioner/vendor-test"}}]})
    assert r.status_code == 201, r.text


def _client(asgi_app):
    return TestClient(asgi_app, base_url="http://testserver")


def test_u1_services_with_units_and_periods(asgi_app, views_app, db):
    t = seed(db, views_app)
    c = _client(asgi_app)
    system = headers(views_app, t, "system/*.cruds")
    pid = f"{t}-pat-0"
    home = c.get(f"/fhir/{t}/ServiceRequest", params={"subject": f"Patient/{pid}", "code": "15"},
                 headers=system).json()["entry"][0]["resource"]["performer"][0]["reference"]
    # a third decided service: praktisk bistand (IPLOS 1) from the home-care unit
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
          "code": {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.9151", "code": "1",
                               "display": "Praktisk bistand - daglige gjøremål"}]},
          "subject": {"reference": f"Patient/{pid}"},
          "occurrencePeriod": {"start": "2025-02-01", "end": "2026-02-01"},
          "performer": [{"reference": home}]}
    r = c.post(f"/fhir/{t}/ServiceRequest", json=sr, headers=system)
    assert r.status_code == 201, r.text
    eoc = {"resourceType": "EpisodeOfCare", "status": "active",
           "type": [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.9151", "code": "1"}]}],
           "patient": {"reference": f"Patient/{pid}"},
           "managingOrganization": {"reference": home},
           "period": {"start": "2025-02-01"},
           "referralRequest": [{"reference": f"ServiceRequest/{r.json()['id']}"}]}
    assert c.post(f"/fhir/{t}/EpisodeOfCare", json=eoc, headers=system).status_code == 201

    user = headers(views_app, t, "user/*.rs", **vendor(t))
    b = overview(c, t, pid, user).json()
    items = section_items(b, "tjenester")
    srs = [x for x in items if x["resourceType"] == "ServiceRequest"]
    eocs = [x for x in items if x["resourceType"] == "EpisodeOfCare"]
    assert len(srs) == 3 and len(eocs) == 3
    assert all(x["occurrencePeriod"]["start"] for x in srs)
    assert all(x["period"]["start"] for x in eocs)
    orgs = {x["id"]: x for x in items if x["resourceType"] == "Organization"}
    assert all(p["reference"].split("/")[1] in orgs for x in srs for p in x["performer"])
    assert all(o.get("telecom") for o in orgs.values())  # contact
    assert any(x["resourceType"] == "HealthcareService" for x in items)
    text = section(b, "tjenester")["text"]["div"]
    assert "Helsetjenester i hjemmet" in text and "Praktisk bistand" in text
    # the same through plain search
    r = c.get(f"/fhir/{t}/ServiceRequest", params={"subject": f"Patient/{pid}",
                                                   "status": "active",
                                                   "_include": "ServiceRequest:performer"},
              headers=user)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert sum(e["resource"]["resourceType"] == "ServiceRequest" for e in entries) == 3
    assert any(e["resource"]["resourceType"] == "Organization" for e in entries)
    r = c.get(f"/fhir/{t}/EpisodeOfCare", params={"patient": pid, "status": "active"},
              headers=user)
    assert len(r.json()["entry"]) == 3


def test_u2_imported_history(asgi_app, views_app, db):
    t = seed(db, views_app)
    c = _client(asgi_app)
    pid = f"{t}-pat-3"
    old = "http://gammel-epj.example/fhir"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Condition", "meta": {"source": old},
                      "clinicalStatus": {"coding": [{
                          "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                          "code": "resolved"}]},
                      "code": {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.7110",
                                           "code": "S72.0", "display": "Lårhalsbrudd"}],
                               "text": "Lårhalsbrudd"},
                      "subject": {"reference": f"Patient/{pid}"},
                      "onsetDateTime": "2019-03-04"},
         "request": {"method": "POST", "url": "Condition"}},
        {"resource": {"resourceType": "Procedure", "meta": {"source": old},
                      "status": "completed",
                      "code": {"text": "Hemiprotese hofte"},
                      "subject": {"reference": f"Patient/{pid}"},
                      "performedDateTime": "2019-03-05"},
         "request": {"method": "POST", "url": "Procedure"}},
        {"resource": {"resourceType": "Encounter", "meta": {"source": old},
                      "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                "code": "IMP", "display": "inpatient encounter"},
                      "type": [{"text": "Innleggelse ortopedisk avdeling"}],
                      "subject": {"reference": f"Patient/{pid}"},
                      "period": {"start": "2019-03-04", "end": "2019-03-12"}},
         "request": {"method": "POST", "url": "Encounter"}}]}
    system = headers(views_app, t, "system/*.cruds")
    r = c.post(f"/fhir/{t}", json=bundle, headers=system)
    assert r.status_code == 200, r.text
    on_care_team(c, t, pid, system)
    user = headers(views_app, t, "user/*.rs", **vendor(t))
    r = overview(c, t, pid, user)
    assert r.status_code == 200, r.text
    b = r.json()
    hist = section_items(b, "diagnoser")
    names = [x.get("code", {}).get("text") for x in hist] + \
        [x.get("type", [{}])[0].get("text") for x in hist if x["resourceType"] == "Encounter"]
    assert "Lårhalsbrudd" in names and "Hemiprotese hofte" in names
    assert "Innleggelse ortopedisk avdeling" in names
    for rtype, param in (("Condition", "subject"), ("Procedure", "subject"),
                         ("Encounter", "subject")):
        r = c.get(f"/fhir/{t}/{rtype}", params={param: f"Patient/{pid}", "date": "2019"}
                  if rtype != "Condition" else {param: f"Patient/{pid}", "code": "S72.0"},
                  headers=user)
        assert r.status_code == 200 and r.json().get("entry"), (rtype, r.text)


def test_lookup_by_fodselsnummer(asgi_app, views_app, seeded):
    c = _client(asgi_app)
    user = headers(views_app, seeded, "user/*.rs", **vendor(seeded))
    pat = c.get(f"/fhir/{seeded}/Patient/{seeded}-pat-0", headers=user).json()
    ident = pat["identifier"][0]
    r = c.post(f"/fhir/{seeded}/Patient/_search",
               data={"identifier": f"{ident['system']}|{ident['value']}"}, headers=user)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [f"{seeded}-pat-0"]


def test_policy_applies_to_federated_items(asgi_app, views_app, seeded, simulators):
    sources = [simulators.get(k, seeded, PATIENTS).config(cache_ttl_s=0)
               for k in ("kjernejournal", "pll", "provesvar")]
    configure(views_app.services.engine, seeded, sources)
    c = _client(asgi_app)
    pid = f"{seeded}-pat-0"
    # scopes without AllergyIntolerance/MedicationStatement: neither local nor federated shown
    scope = ("user/Patient.rs user/Consent.rs user/Condition.rs user/Observation.rs "
             "user/ServiceRequest.rs user/EpisodeOfCare.rs user/Organization.rs")
    r = overview(c, seeded, pid, headers(views_app, seeded, scope, **vendor(seeded)))
    assert r.status_code == 200, r.text
    b = r.json()
    types = {e["resource"]["resourceType"] for e in b["entry"]}
    assert "AllergyIntolerance" not in types and "MedicationStatement" not in types
    assert section_items(b, "kritisk")[0]["resourceType"] == "Consent"
    # a patient/ token of another patient does not get this patient's overview
    other = headers(views_app, seeded, "patient/*.rs", patient=f"{seeded}-pat-1")
    assert overview(c, seeded, pid, other).status_code == 404
    # … and its own overview holds only its own data
    b = overview(c, seeded, f"{seeded}-pat-1", other).json()
    assert b["type"] == "document"
    for e in b["entry"]:
        res = e["resource"]
        ref = (res.get("patient") or res.get("subject") or {}).get("reference")
        if ref:
            assert ref.endswith(f"Patient/{seeded}-pat-1")


def test_audited_as_one_access(asgi_app, views_app, seeded, simulators):
    configure(views_app.services.engine, seeded, [])
    calls = []
    hooks = views_app.services.extras.setdefault("overview_audit", [])
    hook = lambda repo, pid, refs: calls.append((pid, list(refs)))
    hooks.append(hook)
    try:
        c = _client(asgi_app)
        b = overview(c, seeded, f"{seeded}-pat-0", headers(views_app, seeded)).json()
    finally:
        hooks.remove(hook)
    assert len(calls) == 1
    pid, refs = calls[0]
    shown = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in b["entry"]
             if e["resource"]["resourceType"] not in ("Composition", "Provenance",
                                                      "OperationOutcome")}
    assert pid == f"{seeded}-pat-0" and set(refs) == shown


def test_overview_is_one_audited_access_listing_every_resource(asgi_app, views_app, seeded,
                                                               simulators):
    """In the audit log (not a hook): one AuditEvent for the $oversikt request, naming the
    patient and every resource shown — local and federated."""
    from tests.auditflow.conftest import audit_rows, refs

    sources = [simulators.get(k, seeded, PATIENTS).config(cache_ttl_s=0)
               for k in ("kjernejournal", "pll", "provesvar")]
    configure(views_app.services.engine, seeded, sources)
    c = _client(asgi_app)
    pid = f"{seeded}-pat-0"
    before = len(audit_rows(views_app, seeded))
    r = overview(c, seeded, pid, headers(views_app, seeded, "user/*.rs", **vendor(seeded)))
    assert r.status_code == 200, r.text
    b = r.json()
    rows = [x for x in audit_rows(views_app, seeded)[before:] if x["agent"] == "9000001"]
    assert [x["subtype"] for x in rows] == ["$oversikt"]
    event = rows[0]["event"]
    listed = {x.split("/_history/")[0] for x in refs(event)}

    def audited(e: dict) -> bool:
        """Listed as ``Type/id`` or (a federated item) by its absolute URL."""
        res = e["resource"]
        return f"{res['resourceType']}/{res['id']}" in listed or e["fullUrl"] in listed

    shown = [e for e in b["entry"]  # the data shown (not the document's own parts)
             if e["resource"]["resourceType"] not in ("Composition", "Provenance",
                                                      "OperationOutcome")]
    assert all(audited(e) for e in shown), [e["fullUrl"] for e in shown if not audited(e)]
    from fkj.sources.base import item_sources
    sims = {s["base_url"] for s in sources}
    federated = [e for e in b["entry"] if {u for u, _ in item_sources(e["resource"])} & sims]
    assert federated and all(audited(e) for e in federated)
    assert refs(event, role="1") == [f"Patient/{pid}"]
