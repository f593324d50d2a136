"""Conditional create (If-None-Exist), conditional update, conditional delete and the
conditional form of JSON Patch, end to end over HTTP."""

from __future__ import annotations

from tests.api.builders import (
    JSON_PATCH,
    LOCAL_SYS,
    count,
    expressions_of,
    history,
    location_id,
    outcome,
    pasient,
)
from tests.api.helpers import FHIR, create

COND = f"identifier={LOCAL_SYS}|"


def _ident(value: str) -> dict:
    return {"identifier": f"{LOCAL_SYS}|{value}"}


# ---------------------------------------------------------------- conditional create
def test_conditional_create_no_match_creates(client):
    r = client.post(f"{client.base}/Patient", json=pasient("Ny", value="P-1"),
                    headers={**FHIR, "If-None-Exist": COND + "P-1"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["resourceType"] == "Patient" and body["meta"]["versionId"] == "1"
    assert location_id(r.headers["Location"]) == ("Patient", body["id"])
    assert count(client, "Patient", _ident("P-1")) == 1


def test_conditional_create_one_match_returns_existing_without_new_version(client):
    existing = create(client, pasient("Eksisterende", value="P-2"))
    create(client, pasient("Annen", value="P-3"))
    r = client.post(f"{client.base}/Patient", json=pasient("Duplikat", value="P-2"),
                    headers={**FHIR, "If-None-Exist": COND + "P-2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == existing["id"]
    assert body["meta"]["versionId"] == "1"
    assert body["name"][0]["family"] == "Eksisterende"
    assert count(client, "Patient") == 2
    assert count(client, "Patient", {"family": "Duplikat"}) == 0
    h = history(client, f"Patient/{existing['id']}")
    assert h["total"] == 1 and len(h["entry"]) == 1
    assert history(client, "Patient")["total"] == 2


def test_conditional_create_two_matches_is_412(client):
    create(client, pasient("Tvilling", value="P-4"))
    create(client, pasient("Tvilling", value="P-4"))
    r = client.post(f"{client.base}/Patient", json=pasient("Tredje", value="P-4"),
                    headers={**FHIR, "If-None-Exist": COND + "P-4"})
    assert r.status_code == 412, r.text
    outcome(r)
    assert count(client, "Patient", _ident("P-4")) == 2
    assert count(client, "Patient", {"family": "Tredje"}) == 0


# ---------------------------------------------------------------- conditional update
def test_conditional_update_no_match_creates(client):
    r = client.put(f"{client.base}/Patient", params=_ident("U-1"),
                   json=pasient("Opprettet", value="U-1"), headers=FHIR)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["meta"]["versionId"] == "1" and body["name"][0]["family"] == "Opprettet"
    assert location_id(r.headers["Location"]) == ("Patient", body["id"])
    assert client.get(f"{client.base}/Patient/{body['id']}").json() == body
    assert count(client, "Patient", _ident("U-1")) == 1


def test_conditional_update_one_match_updates_it(client):
    p = create(client, pasient("Gammel", value="U-2"))
    other = create(client, pasient("Urørt", value="U-3"))
    r = client.put(f"{client.base}/Patient", params=_ident("U-2"),
                   json=pasient("Oppdatert", value="U-2"), headers=FHIR)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == p["id"] and body["meta"]["versionId"] == "2"
    stored = client.get(f"{client.base}/Patient/{p['id']}").json()
    assert stored["name"][0]["family"] == "Oppdatert" and stored["meta"]["versionId"] == "2"
    assert client.get(f"{client.base}/Patient/{other['id']}").json() == other
    assert count(client, "Patient") == 2


def test_conditional_update_with_matching_body_id_updates(client):
    p = create(client, pasient("Med id", value="U-4"))
    r = client.put(f"{client.base}/Patient", params=_ident("U-4"),
                   json=pasient("Med id 2", value="U-4", id=p["id"]), headers=FHIR)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == p["id"] and r.json()["meta"]["versionId"] == "2"


def test_conditional_update_two_matches_is_412(client):
    a = create(client, pasient("Lik", value="U-5"))
    b = create(client, pasient("Lik", value="U-5"))
    r = client.put(f"{client.base}/Patient", params=_ident("U-5"),
                   json=pasient("Endret", value="U-5"), headers=FHIR)
    assert r.status_code == 412, r.text
    outcome(r)
    for p in (a, b):
        assert client.get(f"{client.base}/Patient/{p['id']}").json() == p
    assert count(client, "Patient") == 2


def test_conditional_update_body_id_mismatching_match_is_400(client):
    p = create(client, pasient("Riktig", value="U-6"))
    r = client.put(f"{client.base}/Patient", params=_ident("U-6"),
                   json=pasient("Feil", value="U-6", id="en-annen-id"), headers=FHIR)
    assert r.status_code == 400, r.text
    assert "Patient.id" in expressions_of(outcome(r))
    assert client.get(f"{client.base}/Patient/{p['id']}").json() == p
    assert client.get(f"{client.base}/Patient/en-annen-id").status_code == 404


# ---------------------------------------------------------------- conditional delete
def test_conditional_delete_single_match_deletes_it(client):
    p = create(client, pasient("Slettes", value="D-1"))
    keep = create(client, pasient("Beholdes", value="D-2"))
    r = client.delete(f"{client.base}/Patient", params=_ident("D-1"))
    assert r.status_code in (200, 204), r.text
    assert client.get(f"{client.base}/Patient/{p['id']}").status_code == 410
    assert client.get(f"{client.base}/Patient/{keep['id']}").json() == keep
    assert count(client, "Patient") == 1
    h = history(client, f"Patient/{p['id']}")
    assert [e["request"]["method"] for e in h["entry"]] == ["DELETE", "POST"]


def test_conditional_delete_multiple_matches_is_412(client):
    a = create(client, pasient("Flere", value="D-3"))
    b = create(client, pasient("Flere", value="D-3"))
    r = client.delete(f"{client.base}/Patient", params=_ident("D-3"))
    assert r.status_code == 412, r.text
    outcome(r)
    for p in (a, b):
        assert client.get(f"{client.base}/Patient/{p['id']}").json() == p
    assert history(client)["total"] == 2


def test_conditional_delete_no_match_deletes_nothing(client):
    a = create(client, pasient("Ingen treff", value="D-4"))
    before = history(client)["total"]
    r = client.delete(f"{client.base}/Patient", params=_ident("D-finnes-ikke"))
    assert r.status_code in (200, 204), r.text
    assert client.get(f"{client.base}/Patient/{a['id']}").json() == a
    assert count(client, "Patient") == 1
    assert history(client)["total"] == before


# ---------------------------------------------------------------- conditional patch
def test_conditional_patch_single_match(client):
    p = create(client, pasient("Lapp", value="J-1"))
    other = create(client, pasient("Lapp", value="J-2"))
    r = client.patch(f"{client.base}/Patient", params=_ident("J-1"),
                     json=[{"op": "replace", "path": "/name/0/family", "value": "Lappet"}],
                     headers=JSON_PATCH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == p["id"] and body["meta"]["versionId"] == "2"
    assert body["name"][0]["family"] == "Lappet"
    assert client.get(f"{client.base}/Patient/{p['id']}").json() == body
    assert client.get(f"{client.base}/Patient/{other['id']}").json() == other


def test_conditional_patch_multiple_matches_is_412(client):
    a = create(client, pasient("Dobbel", value="J-3"))
    b = create(client, pasient("Dobbel", value="J-3"))
    r = client.patch(f"{client.base}/Patient", params=_ident("J-3"),
                     json=[{"op": "replace", "path": "/name/0/family", "value": "X"}],
                     headers=JSON_PATCH)
    assert r.status_code == 412, r.text
    outcome(r)
    for p in (a, b):
        assert client.get(f"{client.base}/Patient/{p['id']}").json() == p


def test_conditional_patch_no_match_is_404(client):
    a = create(client, pasient("Annen", value="J-4"))
    r = client.patch(f"{client.base}/Patient", params=_ident("J-ukjent"),
                     json=[{"op": "replace", "path": "/name/0/family", "value": "X"}],
                     headers=JSON_PATCH)
    assert r.status_code == 404, r.text
    outcome(r)
    assert client.get(f"{client.base}/Patient/{a['id']}").json() == a
    assert count(client, "Patient") == 1
