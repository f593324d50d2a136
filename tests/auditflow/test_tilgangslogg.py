"""``$tilgangslogg``: the citizen's "who has accessed my information", and the municipality's
search of the audit log by person, patient and period."""

from __future__ import annotations

import time

from tests.api.builders import fnr
from tests.api.helpers import FHIR, create
from tests.auditflow.conftest import client_for

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"


def world(asgi_app, fkj, tenant):
    sysc = client_for(asgi_app, fkj, tenant)
    pnr, other_pnr = fnr(), fnr(synthetic=False)
    pr = create(sysc, {"resourceType": "Practitioner", "name": [{"family": "Legesen",
                                                                  "given": ["Lise"]}]})
    pa = create(sysc, {"resourceType": "Patient", "identifier": [{"system": FNR, "value": pnr}],
                       "name": [{"family": "Innbygger"}]})
    pb = create(sysc, {"resourceType": "Patient",
                       "identifier": [{"system": FNR, "value": other_pnr}]})
    oa = create(sysc, {"resourceType": "Observation", "status": "final",
                       "code": {"text": "puls"}, "subject": {"reference": f"Patient/{pa['id']}"}})
    for p in (pa, pb):  # Lise Legesen has a care relation to both patients
        create(sysc, {"resourceType": "CareTeam", "status": "active",
                      "subject": {"reference": f"Patient/{p['id']}"},
                      "participant": [{"member": {"reference": f"Practitioner/{pr['id']}"}}]})
    return sysc, pnr, pr["id"], pa["id"], pb["id"], oa["id"]


def emergency(asgi_app, fkj, tenant, patient: str):
    """A legevakt physician without a care relation who opens ``patient`` by emergency
    access ($akuttilgang)."""
    sysc = client_for(asgi_app, fkj, tenant)
    vakt = create(sysc, {"resourceType": "Practitioner", "name": [{"family": "Olsen",
                                                                    "given": ["Vakt"]}]})
    er = client_for(asgi_app, fkj, tenant, "user/*.cruds", kind="practitioner",
                    subject="helseid-9144898", hpr_number="9144898", roles=["lege"],
                    unit="HER:81299", fhir_user=f"Practitioner/{vakt['id']}", client_id="ehr-app")
    assert er.get(f"{er.base}/Patient/{patient}").status_code == 404  # no relation yet
    r = er.post(f"{er.base}/Patient/{patient}/$akuttilgang", headers=FHIR, json={
        "resourceType": "Parameters",
        "parameter": [{"name": "reason", "valueString": "bevisstløs på legevakten"}]})
    assert r.status_code == 200, r.text
    return er


def practitioner(asgi_app, fkj, tenant, pr, **kw):
    return client_for(asgi_app, fkj, tenant, "user/*.cruds", kind="practitioner",
                      subject="helseid-9144897", hpr_number="9144897", roles=["lege"],
                      unit="HER:81234", fhir_user=f"Practitioner/{pr}", client_id="ehr-app", **kw)


def accesses(params: dict) -> list[dict]:
    out = []
    for p in params["parameter"]:
        if p["name"] != "access":
            continue
        d: dict = {}
        for part in p["part"]:
            v = next(part[k] for k in part if k.startswith("value"))
            d.setdefault(part["name"], []).append(v)
        out.append(d)
    return out


def test_citizen_sees_who_accessed_their_information(audited, asgi_app, tenant):
    sysc, pnr, pr, pa, pb, oa = world(asgi_app, audited, tenant)
    doc = practitioner(asgi_app, audited, tenant, pr)
    assert doc.get(f"{doc.base}/Observation/{oa}").status_code == 200
    er = emergency(asgi_app, audited, tenant, pa)
    assert er.get(f"{er.base}/Patient/{pa}").status_code == 200
    assert doc.get(f"{doc.base}/Patient/{pb}").status_code == 200  # someone else

    citizen = client_for(asgi_app, audited, tenant, "patient/*.rs", kind="citizen",
                         subject="idporten-x", pid=pnr, client_id="helsenorge")
    r = citizen.get(f"{citizen.base}/Patient/{pa}/$tilgangslogg")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Parameters"
    acc = accesses(body)
    # newest first: the BTG read, the break-the-glass act, the refusal before it, Lise's read
    btg, act, refused, read = acc[0], acc[1], acc[2], acc[3]
    assert act["interaction"] == ["$akuttilgang"] and act["emergency"] == [True]
    assert act["purpose"] == ["ETREAT", "BTG"] and act["who"] == ["Vakt Olsen"]
    assert refused["outcome"] == ["4"] and refused["emergency"] == [False]
    assert btg["who"] == ["Vakt Olsen"] and btg["hpr"][0]["value"] == "9144898"
    assert btg["role"] == ["lege"] and btg["unit"] == ["HER:81299"]
    assert btg["client"] == ["ehr-app"] and btg["emergency"] == [True]
    assert "BTG" in btg["purpose"] and btg["resourceType"] == ["Patient"]
    assert read["resourceType"] == ["Observation"] and read["emergency"] == [False]
    assert read["interaction"] == ["read"] and read["time"][0].endswith("Z")
    assert all(a["who"] != ["Vakt Olsen"] or a["emergency"] == [True] for a in acc
               if a["outcome"] == ["0"])
    writes = [a for a in acc if a["action"] == ["C"]]
    assert {tuple(a["resourceType"]) for a in writes} == {("Patient",), ("Observation",),
                                                          ("CareTeam",)}
    assert writes[0]["who"] == ["fkj-cli"]

    # another patient's log: 403, for the citizen and for a token bound to another patient
    assert citizen.get(f"{citizen.base}/Patient/{pb}/$tilgangslogg").status_code == 403
    bound = client_for(asgi_app, audited, tenant, "patient/*.rs", patient=pb)
    assert bound.get(f"{bound.base}/Patient/{pa}/$tilgangslogg").status_code == 403
    r = bound.get(f"{bound.base}/Patient/{pb}/$tilgangslogg")
    assert r.status_code == 200
    assert [a["who"] for a in accesses(r.json())][1] == ["Lise Legesen"]
    # a practitioner (not leder) may not read the log, nor search it
    assert doc.get(f"{doc.base}/Patient/{pa}/$tilgangslogg").status_code == 403
    assert doc.get(f"{doc.base}/$tilgangslogg").status_code == 403
    assert citizen.get(f"{citizen.base}/$tilgangslogg").status_code == 403
    # reading the log is itself an access, and is logged
    r = citizen.get(f"{citizen.base}/Patient/{pa}/$tilgangslogg")
    logged = [a for a in accesses(r.json()) if a["interaction"] == ["$tilgangslogg"]]
    denied = logged[0]  # newest first: the practitioner's refused attempt
    own = next(a for a in logged if a["who"] == [pnr])
    assert sum(a["outcome"] == ["4"] for a in logged) == 2  # + the other patient's token
    assert denied["interaction"] == ["$tilgangslogg"] and denied["who"] == ["Lise Legesen"]
    assert denied["outcome"] == ["4"] and denied["outcomeDesc"][0].startswith("403")
    assert own["interaction"] == ["$tilgangslogg"] and own["who"] == [pnr]
    assert own["outcome"] == ["0"] and own["client"] == ["helsenorge"]


def test_municipality_searches_by_person_patient_and_period(audited, asgi_app, tenant):
    sysc, pnr, pr, pa, pb, oa = world(asgi_app, audited, tenant)
    t0 = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 1))
    doc = practitioner(asgi_app, audited, tenant, pr)
    assert doc.get(f"{doc.base}/Observation/{oa}").status_code == 200
    assert doc.get(f"{doc.base}/Patient/{pb}").status_code == 200
    er = emergency(asgi_app, audited, tenant, pb)
    assert er.get(f"{er.base}/Patient/{pb}").status_code == 200

    leder = client_for(asgi_app, audited, tenant, "user/*.rs", kind="practitioner",
                       subject="helseid-1", hpr_number="1000001", roles=["leder"])
    r = leder.get(f"{leder.base}/$tilgangslogg", params={"agent": "9144897"})
    assert r.status_code == 200, r.text
    events = [e["resource"] for e in r.json()["entry"]]
    assert [e["resourceType"] for e in events] == ["AuditEvent"] * 2
    assert [e["action"] for e in events] == ["R", "R"]
    r = leder.get(f"{leder.base}/$tilgangslogg",
                  params={"patient": f"Patient/{pa}", "agent": "9144897", "since": t0})
    (e,) = [x["resource"] for x in r.json()["entry"]]
    assert e["extension"][0]["valueReference"]["reference"] == f"Patient/{pa}"
    r = leder.get(f"{leder.base}/$tilgangslogg", params={"purpose": "BTG"})
    # the break-the-glass act and the read it opened
    assert [x["resource"]["entity"][0]["what"]["reference"] for x in r.json()["entry"]] == [
        f"Patient/{pb}"] * 2
    assert leder.get(f"{leder.base}/$tilgangslogg", params={"until": "2000-01-01"}).json()[
        "total"] == 0
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert leder.get(f"{leder.base}/$tilgangslogg",
                     params={"since": day, "until": day}).json()["total"] > 5
    assert leder.get(f"{leder.base}/$tilgangslogg", params={"since": "igår"}).status_code == 400
    # a system client of the municipality may search too, and the leader may read a log
    assert sysc.get(f"{sysc.base}/$tilgangslogg", params={"patient": pa}).status_code == 200
    r = leder.get(f"{leder.base}/Patient/{pa}/$tilgangslogg")
    assert r.status_code == 200 and len(r.json()["parameter"]) > 2
    assert leder.get(f"{leder.base}/Patient/finnes-ikke/$tilgangslogg").status_code == 404
    # the log cannot be changed through the operation
    assert leder.post(f"{leder.base}/$tilgangslogg", json={"resourceType": "Parameters"},
                      headers=FHIR).status_code == 405
