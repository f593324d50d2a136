"""batch and transaction Bundles: urn:uuid and conditional references, processing order,
all-or-nothing, per-entry outcomes in a batch, GET entries, ifNoneExist."""

from __future__ import annotations

import base64
import json

import pytest

from tests.api.builders import (
    LOCAL_SYS,
    count,
    delete_entry,
    expressions_of,
    get_entry,
    history,
    location_id,
    outcome,
    pasient,
    post_bundle,
    post_entry,
    put_entry,
)
from tests.api.helpers import FHIR, create

UUID_P = "urn:uuid:0b1f3c1e-7c55-4d7e-9a53-2f1f0c7b2a11"
UUID_E = "urn:uuid:7a0c2f5d-3b7e-4a0f-8a1d-5e6f7a8b9c0d"


def observation(subject: str, encounter: str | None = None, value: float = 38.5) -> dict:
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5",
                                "display": "Kroppstemperatur"}]},
           "subject": {"reference": subject},
           "valueQuantity": {"value": value, "unit": "Cel", "system": "http://unitsofmeasure.org",
                             "code": "Cel"}}
    if encounter:
        obs["encounter"] = {"reference": encounter}
    return obs


def encounter(subject: str) -> dict:
    return {"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "HH", "display": "home health"},
            "subject": {"reference": subject}}


def _status(entry: dict) -> int:
    return int(entry["response"]["status"][:3])


def _ok(r) -> dict:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle", body
    return body


# ---------------------------------------------------------------- transaction: references
def test_transaction_rewrites_urn_uuid_references(client):
    r = post_bundle(client, "transaction", [
        post_entry(observation(UUID_P, UUID_E), "urn:uuid:3d3c8f3e-1111-4b1e-9a53-000000000001"),
        post_entry(encounter(UUID_P), UUID_E),
        post_entry(pasient("Uuid", value="T-1"), UUID_P),
    ])
    body = _ok(r)
    assert body["type"] == "transaction-response"
    assert [_status(e) for e in body["entry"]] == [201, 201, 201]
    (ot, oid), (et, eid), (pt, pid) = (location_id(e["response"]["location"])
                                       for e in body["entry"])
    assert (ot, et, pt) == ("Observation", "Encounter", "Patient")
    obs = client.get(f"{client.base}/Observation/{oid}").json()
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert obs["encounter"]["reference"] == f"Encounter/{eid}"
    enc = client.get(f"{client.base}/Encounter/{eid}").json()
    assert enc["subject"]["reference"] == f"Patient/{pid}"
    assert client.get(f"{client.base}/Patient/{pid}").json()["identifier"][0]["value"] == "T-1"
    found = client.get(f"{client.base}/Observation", params={"subject": f"Patient/{pid}"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [oid]


def test_transaction_urn_uuid_without_fullurl_is_rejected(client):
    r = post_bundle(client, "transaction", [
        post_entry(pasient("Ok"), UUID_P),
        post_entry(observation("urn:uuid:00000000-0000-4000-8000-000000000000")),
    ])
    assert r.status_code == 400, r.text
    assert any(x.startswith("Bundle.entry[1]") for x in expressions_of(outcome(r)))
    assert count(client, "Patient") == 0


def test_transaction_resolves_conditional_references(client):
    p = create(client, pasient("Betinget", value="C-1"))
    create(client, pasient("Annen", value="C-2"))
    r = post_bundle(client, "transaction", [
        post_entry(observation(f"Patient?identifier={LOCAL_SYS}|C-1")),
        post_entry(encounter(f"Patient?identifier={LOCAL_SYS}|C-1")),
    ])
    body = _ok(r)
    _, oid = location_id(body["entry"][0]["response"]["location"])
    _, eid = location_id(body["entry"][1]["response"]["location"])
    assert client.get(f"{client.base}/Observation/{oid}").json()["subject"]["reference"] == \
        f"Patient/{p['id']}"
    assert client.get(f"{client.base}/Encounter/{eid}").json()["subject"]["reference"] == \
        f"Patient/{p['id']}"


@pytest.mark.parametrize("matches", [0, 2], ids=["no-match", "two-matches"])
def test_transaction_conditional_reference_must_match_exactly_one(client, matches):
    for _ in range(matches):
        create(client, pasient("Flertydig", value="C-9"))
    before = history(client)["total"]
    r = post_bundle(client, "transaction", [
        post_entry(pasient("Skal ikke lagres", value="C-10")),
        post_entry(observation(f"Patient?identifier={LOCAL_SYS}|C-9")),
        post_entry(encounter(f"Patient?identifier={LOCAL_SYS}|C-9")),
    ])
    assert r.status_code == 412, r.text
    assert any(x.startswith("Bundle.entry[1]") for x in expressions_of(outcome(r)))
    assert count(client, "Patient") == matches
    assert count(client, "Observation") == 0
    assert count(client, "Encounter") == 0
    assert history(client)["total"] == before


# ---------------------------------------------------------------- transaction: order
def test_transaction_processes_delete_post_put_get_in_that_order(client):
    a = create(client, pasient("Gammel", value="O-1"))
    z = create(client, pasient("Slettes", value="O-2"))
    updated = {**pasient("Orden", value="O-1"), "id": a["id"]}
    r = post_bundle(client, "transaction", [
        get_entry("Patient?family=Orden"),
        get_entry(f"Patient?_id={z['id']}"),
        put_entry(updated),
        post_entry(pasient("Orden", value="O-3")),
        delete_entry(f"Patient/{z['id']}"),
    ])
    body = _ok(r)
    assert [_status(e) for e in body["entry"]] == [200, 200, 200, 201, 200]
    # GETs run last: they see the PUT and the POST, and not the deleted resource
    seen = body["entry"][0]["resource"]
    assert seen["resourceType"] == "Bundle" and seen["type"] == "searchset"
    assert sorted(e["resource"]["identifier"][0]["value"] for e in seen["entry"]) == \
        ["O-1", "O-3"]
    assert not body["entry"][1]["resource"].get("entry")
    # the tenant history records DELETE, then POST, then PUT (newest first below)
    top = history(client)["entry"][:3]
    assert [e["request"]["method"] for e in top] == ["PUT", "POST", "DELETE"]
    assert client.get(f"{client.base}/Patient/{z['id']}").status_code == 410
    assert client.get(f"{client.base}/Patient/{a['id']}").json()["meta"]["versionId"] == "2"


# ---------------------------------------------------------------- transaction: atomicity
def test_transaction_with_invalid_tenth_entry_stores_nothing(client):
    seed = create(client, pasient("Fra før"))
    before_total = history(client)["total"]
    entries = [post_entry(pasient(f"Transaksjon{i}", value=f"A-{i}"), f"urn:uuid:{i:08d}-0000-4000-8000-000000000000")
               for i in range(9)]
    entries.append(post_entry(pasient("Ugyldig", birthDate="2023-02-30")))
    r = post_bundle(client, "transaction", entries)
    assert r.status_code == 400, r.text
    exprs = expressions_of(outcome(r))
    assert exprs and all(x.startswith("Bundle.entry[9]") for x in exprs), exprs
    assert count(client, "Patient") == 1
    for i in range(9):
        assert count(client, "Patient", {"identifier": f"{LOCAL_SYS}|A-{i}"}) == 0
    th = history(client, "Patient")
    assert th["total"] == 1 and [e["resource"]["id"] for e in th["entry"]] == [seed["id"]]
    assert history(client)["total"] == before_total


def test_transaction_with_missing_reference_in_one_entry_names_that_entry(client):
    p = create(client, pasient("Ref"))
    before_total = history(client)["total"]
    r = post_bundle(client, "transaction", [
        post_entry(observation(f"Patient/{p['id']}")),
        post_entry(observation("Patient/finnes-ikke")),
        post_entry(observation(f"Patient/{p['id']}")),
    ])
    assert r.status_code == 422, r.text
    exprs = expressions_of(outcome(r))
    assert exprs and all(x.startswith("Bundle.entry[1]") for x in exprs), exprs
    assert count(client, "Observation") == 0
    assert history(client)["total"] == before_total


def test_transaction_with_stale_if_match_in_tenth_entry_rolls_back_nine_updates(client):
    ps = [create(client, pasient(f"Versjon{i}", value=f"V-{i}")) for i in range(10)]
    last = {**ps[9]}
    last.pop("meta")
    r = client.put(f"{client.base}/Patient/{last['id']}", json={**last, "active": True},
                   headers=FHIR)
    assert r.status_code == 200
    before_total = history(client)["total"]
    entries = []
    for p in ps[:9]:
        body = {k: v for k, v in p.items() if k != "meta"}
        entries.append(put_entry({**body, "name": [{"family": "Endret"}]}))
    entries.append(put_entry({**last, "active": False}, if_match='W/"1"'))
    r = post_bundle(client, "transaction", entries)
    assert r.status_code == 412, r.text
    outcome(r)
    for p in ps[:9]:
        got = client.get(f"{client.base}/Patient/{p['id']}").json()
        assert got == p
        assert got["meta"]["versionId"] == "1"
    tenth = client.get(f"{client.base}/Patient/{last['id']}").json()
    assert tenth["meta"]["versionId"] == "2" and tenth["active"] is True
    assert count(client, "Patient", {"family": "Endret"}) == 0
    assert history(client)["total"] == before_total


def test_transaction_if_none_exist_matches_existing(client):
    p = create(client, pasient("Finnes", value="N-1"))
    r = post_bundle(client, "transaction", [
        post_entry(pasient("Ny kopi", value="N-1"), UUID_P,
                   if_none_exist=f"identifier={LOCAL_SYS}|N-1"),
        post_entry(observation(UUID_P)),
        post_entry(pasient("Helt ny", value="N-2"),
                   if_none_exist=f"identifier={LOCAL_SYS}|N-2"),
    ])
    body = _ok(r)
    assert [_status(e) for e in body["entry"]] == [200, 201, 201]
    assert location_id(body["entry"][0]["response"]["location"]) == ("Patient", p["id"])
    _, oid = location_id(body["entry"][1]["response"]["location"])
    assert client.get(f"{client.base}/Observation/{oid}").json()["subject"]["reference"] == \
        f"Patient/{p['id']}"
    assert client.get(f"{client.base}/Patient/{p['id']}").json() == p
    assert count(client, "Patient", {"identifier": f"{LOCAL_SYS}|N-1"}) == 1
    assert count(client, "Patient", {"identifier": f"{LOCAL_SYS}|N-2"}) == 1


def test_transaction_if_none_exist_with_two_matches_fails(client):
    create(client, pasient("To", value="N-3"))
    create(client, pasient("To", value="N-3"))
    r = post_bundle(client, "transaction", [
        post_entry(pasient("Annen", value="N-4")),
        post_entry(pasient("Tredje", value="N-3"), if_none_exist=f"identifier={LOCAL_SYS}|N-3"),
    ])
    assert r.status_code == 412, r.text
    outcome(r)
    assert count(client, "Patient") == 2


def test_transaction_get_entries_return_resources_and_bundles(client):
    p = create(client, pasient("Lest", value="G-1"))
    r = post_bundle(client, "transaction", [
        get_entry(f"Patient/{p['id']}"),
        get_entry(f"Patient?identifier={LOCAL_SYS}|G-1"),
    ])
    body = _ok(r)
    assert body["entry"][0]["resource"] == p
    found = body["entry"][1]["resource"]
    assert found["type"] == "searchset" and [e["resource"]["id"] for e in found["entry"]] == \
        [p["id"]]


def test_transaction_patch_entry(client):
    p = create(client, pasient("Lapp"))
    patch = [{"op": "replace", "path": "/name/0/family", "value": "Lappet"}]
    r = post_bundle(client, "transaction", [{
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                     "data": base64.b64encode(json.dumps(patch).encode()).decode()},
        "request": {"method": "PATCH", "url": f"Patient/{p['id']}"}}])
    body = _ok(r)
    assert _status(body["entry"][0]) == 200
    got = client.get(f"{client.base}/Patient/{p['id']}").json()
    assert got["name"][0]["family"] == "Lappet" and got["meta"]["versionId"] == "2"


# ---------------------------------------------------------------- batch
def test_batch_entries_are_independent(client):
    p = create(client, pasient("Batch", value="B-1"))
    r = post_bundle(client, "batch", [
        post_entry(pasient("God", value="B-2")),
        post_entry(pasient("Dårlig", foo="bar")),
        get_entry("Patient/finnes-ikke"),
        put_entry({**pasient("Oppdatert", value="B-1"), "id": p["id"]}),
        post_entry(observation("Patient/finnes-ikke")),
        get_entry(f"Patient/{p['id']}"),
        get_entry(f"Patient?identifier={LOCAL_SYS}|B-2"),
    ])
    body = _ok(r)
    assert body["type"] == "batch-response"
    assert [_status(e) for e in body["entry"]] == [201, 400, 404, 200, 422, 200, 200]
    bad = body["entry"][1]["response"]["outcome"]
    assert expressions_of(bad) == ["Bundle.entry[1].resource.foo"]
    assert body["entry"][2]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    ref_err = body["entry"][4]["response"]["outcome"]
    assert expressions_of(ref_err) == ["Bundle.entry[4].resource.subject.reference"]
    read_back = body["entry"][5]["resource"]
    assert read_back["resourceType"] == "Patient" and read_back["meta"]["versionId"] == "2"
    assert read_back["name"][0]["family"] == "Oppdatert"
    found = body["entry"][6]["resource"]
    assert found["resourceType"] == "Bundle" and found["type"] == "searchset"
    assert [e["resource"]["name"][0]["family"] for e in found["entry"]] == ["God"]
    assert count(client, "Patient") == 2
    assert count(client, "Patient", {"family": "Dårlig"}) == 0
    assert count(client, "Observation") == 0


def test_batch_created_entry_has_location_and_is_stored(client):
    r = post_bundle(client, "batch", [post_entry(pasient("Plassert"))])
    body = _ok(r)
    entry = body["entry"][0]
    assert _status(entry) == 201
    rtype, rid = location_id(entry["response"]["location"])
    assert rtype == "Patient"
    assert client.get(f"{client.base}/Patient/{rid}").json()["name"][0]["family"] == "Plassert"


# ---------------------------------------------------------------- Bundle types at the base
@pytest.mark.parametrize("btype", ["collection", "document", "searchset", "history", "message",
                                   "transaction-response"])
def test_post_non_batch_bundle_to_base_is_400(client, btype):
    r = post_bundle(client, btype, [post_entry(pasient("Ikke lagret"))])
    assert r.status_code == 400, r.text
    assert expressions_of(outcome(r)) == ["Bundle.type"]
    assert count(client, "Patient") == 0


def test_post_non_bundle_to_base_is_400(client):
    r = client.post(client.base, json=pasient("Ikke bundle"), headers=FHIR)
    assert r.status_code == 400, r.text
    outcome(r)
    assert count(client, "Patient") == 0


def test_transaction_order_of_entries_does_not_matter_for_references(client):
    """A PUT may refer to a resource that a later entry of the same transaction creates."""
    obs = {"resourceType": "Observation", "id": "late-ref-obs", "status": "final",
           "code": {"text": "puls"}, "subject": {"reference": "Patient/late-ref-pat"}}
    pat = {"resourceType": "Patient", "id": "late-ref-pat", "name": [{"family": "Sen"}]}
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": obs, "request": {"method": "PUT", "url": "Observation/late-ref-obs"}},
        {"resource": pat, "request": {"method": "PUT", "url": "Patient/late-ref-pat"}}]}
    r = client.post(client.base, json=tx, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    got = client.get(f"{client.base}/Observation/late-ref-obs").json()
    assert got["subject"]["reference"] == "Patient/late-ref-pat"


def test_transaction_reference_to_resource_deleted_in_same_transaction_fails(client):
    pat = {"resourceType": "Patient", "id": "gone-pat", "name": [{"family": "Borte"}]}
    assert client.put(f"{client.base}/Patient/gone-pat", json=pat,
                      headers={"Content-Type": "application/fhir+json"}).status_code == 201
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/gone-pat"}}
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Patient/gone-pat"}},
        {"resource": obs, "request": {"method": "POST", "url": "Observation"}}]}
    r = client.post(client.base, json=tx, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 422
    assert client.get(f"{client.base}/Patient/gone-pat").status_code == 200
