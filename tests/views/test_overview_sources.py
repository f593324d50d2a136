"""$oversikt with the three national-service simulators running as separate processes."""

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

KJ_TYPES = {"AllergyIntolerance", "Consent", "Condition", "Flag", "Procedure",
            "DeviceUseStatement"}
ORDER = ["kritisk", "tjenester", "diagnoser", "legemidler", "provesvar", "kartlegging",
         "hjelpemidler", "team"]


def _client(asgi_app):
    return TestClient(asgi_app, base_url="http://testserver")


def _sources(simulators, tenant, **faults):
    out = []
    for kind in ("kjernejournal", "pll", "provesvar"):
        fault = faults.get(kind)
        sim = simulators.get(kind, tenant, PATIENTS, **({"fault": fault} if fault else {}))
        out.append(sim.config(cache_ttl_s=0, breaker_threshold=1000))
    return out


def warm_overview(c, tenant: str, pid: str, h: dict):
    """The overview once all sources have answered a first time: a simulator's first answer
    for a new tenant (its process, the pooled connection) can miss the 800 ms budget on a
    loaded machine, and these tests are about what the sources say, not about that."""
    overview(c, tenant, pid, h)
    return overview(c, tenant, pid, h)


def _sources_of(resource: dict) -> set[str]:
    from fkj.sources.base import item_sources
    return {u for u, _ in item_sources(resource)}


def test_overview_all_sources_up(asgi_app, views_app, seeded, simulators):
    configure(views_app.services.engine, seeded, _sources(simulators, seeded))
    c = _client(asgi_app)
    doctor = legevakt_with_emergency_access(c, views_app, seeded, f"{seeded}-pat-0")
    r = warm_overview(c, seeded, f"{seeded}-pat-0", doctor)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["resourceType"] == "Bundle" and b["type"] == "document"
    comp = b["entry"][0]["resource"]
    assert comp["resourceType"] == "Composition"
    assert [s["code"]["coding"][0]["code"] for s in comp["section"]] == ORDER
    assert not any(e["resource"]["resourceType"] == "OperationOutcome" for e in b["entry"])
    kritisk = section_items(b, "kritisk")
    # the treatment limit at the top of the overview; same fact from KJ and local: once
    assert kritisk[0]["resourceType"] == "Consent"
    hlr = [x for x in kritisk if x["resourceType"] == "Consent"]
    assert len(hlr) == 1
    kj = simulators.get("kjernejournal", seeded, PATIENTS).url
    local = f"http://testserver/fhir/{seeded}"
    assert _sources_of(hlr[0]) == {local, kj}
    allergies = [x for x in kritisk if x["resourceType"] == "AllergyIntolerance"]
    assert len(allergies) == 1 and _sources_of(allergies[0]) == {local, kj}
    # medications (PLL + local, merged) and lab results (prøvesvar + local)
    meds = section_items(b, "legemidler")
    assert meds and all(len(_sources_of(m)) == 2 for m in meds)
    assert any("apixaban" in m["medicationCodeableConcept"]["text"].lower() for m in meds)
    labs = section_items(b, "provesvar")
    assert labs and all(x["resourceType"] == "Observation" for x in labs)
    # every item carries its source: meta.source and a Provenance naming it
    provs = [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Provenance"]
    targets = {t["reference"]: p["entity"][0]["what"]["identifier"]["value"]
               for p in provs for t in p["target"]}
    for e in b["entry"][1:]:
        res = e["resource"]
        if res["resourceType"] in ("Provenance", "OperationOutcome", "Patient"):
            continue
        assert res["meta"]["source"] in (local, kj, *[s["base_url"] for s in
                                                      _sources(simulators, seeded)])
        assert e["fullUrl"] in targets, e["fullUrl"]
    # federated items are found by fødselsnummer and point at the local patient
    assert all(x.get("patient", x.get("subject", {}))["reference"] == f"Patient/{seeded}-pat-0"
               for x in kritisk)


def legevakt_with_emergency_access(c, fkj, tenant: str, pid: str) -> dict:
    """A legevakt physician with no care relation to the patient opens the record by
    emergency access ($akuttilgang), as at 3 a.m.; returns the headers of her requests."""
    import random
    hpr = str(random.randrange(9_100_000, 9_999_999))  # a physician with no earlier grant
    h = headers(fkj, tenant, "user/*.rs", kind="practitioner", subject=f"helseid-{hpr}",
                hpr_number=hpr, roles=["lege"], unit=f"Organization/{tenant}-org-legevakt",
                fhir_user="Practitioner/legevakt-lege", client_id="legevakt-epj")
    assert overview(c, tenant, pid, h).status_code == 404  # no care relation: not known
    r = c.post(f"/fhir/{tenant}/Patient/{pid}/$akuttilgang", headers=h, json={
        "resourceType": "Parameters",
        "parameter": [{"name": "reason", "valueString": "bevisstløs pasient på legevakten"}]})
    assert r.status_code == 200, r.text
    return h


def test_hlr_minus_at_top_when_kjernejournal_is_down(asgi_app, views_app, seeded, simulators):
    configure(views_app.services.engine, seeded,
              _sources(simulators, seeded, kjernejournal="down"))
    c = _client(asgi_app)
    doctor = legevakt_with_emergency_access(c, views_app, seeded, f"{seeded}-pat-0")
    r = overview(c, seeded, f"{seeded}-pat-0", doctor)
    assert r.status_code == 200, r.text
    b = r.json()
    first = section_items(b, "kritisk")[0]
    assert first["resourceType"] == "Consent"
    assert first["provision"]["code"][0]["text"] == "HLR-minus"
    assert first["meta"]["source"] == f"http://testserver/fhir/{seeded}"  # the local copy
    oo = [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] ==
          "OperationOutcome"]
    assert len(oo) == 1 and oo[0]["issue"][0]["details"]["coding"][0]["code"] == "kjernejournal"
    assert "Kjernejournal" in section(b, "kritisk")["text"]["div"]
    assert "Kjernejournal" in b["entry"][0]["resource"]["text"]["div"]
    # the other sources still answered
    assert section_items(b, "legemidler")


def test_hlr_minus_only_in_kjernejournal(asgi_app, views_app, db, simulators):
    """The local copy is gone: the treatment limit comes from Kjernejournal while it is up."""
    from fkj.repository.repository import Repository
    from fkj.types import Principal

    t = seed(db, views_app)
    repo = Repository(views_app.services, Principal.system(t), t)
    repo.delete("Consent", f"{t}-p0-hlr-1")
    c = _client(asgi_app)
    configure(views_app.services.engine, t, _sources(simulators, t))
    doctor = legevakt_with_emergency_access(c, views_app, t, f"{t}-pat-0")
    b = warm_overview(c, t, f"{t}-pat-0", doctor).json()
    assert not [e for e in b["entry"] if e["resource"]["resourceType"] == "OperationOutcome"]
    first = section_items(b, "kritisk")[0]
    kj = simulators.get("kjernejournal", t, PATIENTS).url
    assert first["resourceType"] == "Consent" and first["meta"]["source"] == kj
    assert _sources_of(first) == {kj}
    # … and when Kjernejournal is down too, the overview says so instead
    configure(views_app.services.engine, t, _sources(simulators, t, kjernejournal="down"))
    b = overview(c, t, f"{t}-pat-0", doctor).json()
    assert not any(x["resourceType"] == "Consent" for x in section_items(b, "kritisk"))
    assert "Kjernejournal" in section(b, "kritisk")["text"]["div"]
