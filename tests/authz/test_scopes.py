"""SMART scopes at the FHIR routes: per interaction and resource type, v1 → v2 mapping, on
every entry of batch and transaction Bundles, on _include/_revinclude, chains and _has,
history and operations."""

from __future__ import annotations

import json

import pytest

from tests.api.helpers import FHIR
from tests.authz.conftest import assert_no_data, entries, ids_of, obs

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def new_patient(family="Skopet") -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}]}


def count(client, w, query: str) -> int:
    return client.get(f"{w.base}/{query}&_summary=count").json()["total"]


# ---------------------------------------------------------------- single interactions
def test_read_scope_reads_but_does_not_search_or_create(as_token, world):
    c = as_token("system/Patient.r")
    w = world
    assert c.get(f"{w.base}/Patient/{w.pa}").status_code == 200
    assert c.get(f"{w.base}/Patient/{w.pa}/_history/1").status_code == 200
    assert c.get(f"{w.base}/Patient/{w.pa}/_history").status_code == 200  # history-instance: r
    for r in (c.get(f"{w.base}/Patient?_id={w.pa}"),
              c.post(f"{w.base}/Patient/_search", data={"_id": w.pa}),
              c.get(f"{w.base}/Patient/_history"),
              c.post(f"{w.base}/Patient", json=new_patient(), headers=FHIR),
              c.put(f"{w.base}/Patient/{w.pa}", json={**new_patient(), "id": w.pa},
                    headers=FHIR),
              c.delete(f"{w.base}/Patient/{w.pa}"),
              c.get(f"{w.base}/Observation/{w.oa}"),
              c.get(f"{w.base}/Observation?subject=Patient/{w.pa}")):
        assert r.status_code == 403, (r.request.method, r.request.url, r.text)
        assert_no_data(r, w, allow=(w.pa,))


def test_search_scope_searches_but_does_not_read(as_token, world):
    c = as_token("system/Observation.s")
    w = world
    r = c.get(f"{w.base}/Observation?code={w.code_a}")
    assert r.status_code == 200 and ids_of(r.json()) == {w.oa}
    assert c.post(f"{w.base}/Observation/_search", data={"code": w.code_b}).status_code == 200
    assert c.get(f"{w.base}/Observation/_history").status_code == 200  # history-type: s
    for r in (c.get(f"{w.base}/Observation/{w.oa}"),
              c.get(f"{w.base}/Observation/{w.oa}/_history/1"),
              c.get(f"{w.base}/Observation/{w.oa}/_history"),
              c.get(f"{w.base}/Patient?_id={w.pa}")):
        assert r.status_code == 403, (r.request.url, r.text)


@pytest.mark.parametrize("scope,allowed", [
    ("system/Patient.c", {"create"}),
    ("system/Patient.u", {"update", "patch"}),
    ("system/Patient.d", {"delete"}),
    ("system/Patient.cud", {"create", "update", "patch", "delete"}),
    ("system/Patient.write", {"create", "update", "patch", "delete"}),   # v1
    ("user/*.write", {"create", "update", "patch", "delete"}),          # v1
    ("system/Observation.cruds", set()),
])
def test_write_letters(as_token, client, world, scope, allowed):
    c = as_token(scope)
    w = world
    victim = client.post(f"{w.base}/Patient", json=new_patient("Offer"), headers=FHIR).json()
    calls = {
        "create": lambda: c.post(f"{w.base}/Patient", json=new_patient(), headers=FHIR),
        "update": lambda: c.put(f"{w.base}/Patient/{victim['id']}",
                                json={**new_patient("Endret"), "id": victim["id"]},
                                headers=FHIR),
        "patch": lambda: c.patch(f"{w.base}/Patient/{victim['id']}", content=json.dumps(
            [{"op": "replace", "path": "/name/0/family", "value": "Lappet"}]),
            headers=JSON_PATCH),
        "delete": lambda: c.delete(f"{w.base}/Patient/{victim['id']}"),
    }
    for name, call in calls.items():
        r = call()
        if name in allowed:
            assert r.status_code in (200, 201, 204), (scope, name, r.status_code, r.text)
        else:
            assert r.status_code == 403, (scope, name, r.status_code, r.text)
            assert_no_data(r, w)
    # a write scope never grants reading
    assert c.get(f"{w.base}/Patient/{w.pa}").status_code == (
        200 if "cruds" in scope and "Patient" in scope else 403)


@pytest.mark.parametrize("scope", ["system/Patient.read", "user/Patient.read",
                                   "system/Patient.rs", "system/*.read"])
def test_v1_read_maps_to_rs(as_token, world, scope):
    c = as_token(scope)
    w = world
    assert c.get(f"{w.base}/Patient/{w.pa}").status_code == 200
    r = c.get(f"{w.base}/Patient?_id={w.pa}")
    assert r.status_code == 200 and ids_of(r.json()) == {w.pa}
    assert c.post(f"{w.base}/Patient", json=new_patient(), headers=FHIR).status_code == 403
    assert c.delete(f"{w.base}/Patient/{w.pa}").status_code == 403


def test_token_without_resource_scopes_gets_nothing(as_token, world):
    c = as_token("openid fhirUser launch/patient offline_access")
    w = world
    for path in (f"Patient/{w.pa}", "Patient", "_history", f"Patient/{w.pa}/Observation",
                 "?_type=Patient"):
        r = c.get(f"{w.base}/{path}")
        assert r.status_code == 403, (path, r.text)
        assert_no_data(r, w, allow=(w.pa,))


@pytest.mark.parametrize("scope", ["system/Patient.rs?gender=female", "system/Patient.rs?"])
def test_granular_or_malformed_scopes_fail_closed(as_token, world, scope):
    c = as_token(scope)
    assert c.get(f"{world.base}/Patient/{world.pa}").status_code == 403


def test_summary_count_needs_search(as_token, world):
    r = as_token("system/Observation.r").get(f"{world.base}/Observation?_summary=count")
    assert r.status_code == 403 and "total" not in r.json()


@pytest.mark.parametrize("method", ["DELETE", "PUT"])
def test_conditional_write_without_scope_is_403_whether_or_not_it_matches(as_token, client,
                                                                          world, method):
    """A token without any Observation scope may not conditionally write Observations, and
    the answer may not tell whether matching Observations exist."""
    w = world
    c = as_token("system/Patient.cruds")
    body = json.dumps(obs(w.pa, "cond")) if method == "PUT" else None
    hit = c.request(method, f"{w.base}/Observation?code={w.code_a}", content=body, headers=FHIR)
    miss = c.request(method, f"{w.base}/Observation?code=finnes-ikke", content=body,
                     headers=FHIR)
    assert (hit.status_code, miss.status_code) == (403, 403), (hit.text, miss.text)
    assert client.get(f"{w.base}/Observation/{w.oa}").status_code == 200
    assert count(client, w, "Observation?code=cond") == 0


# ---------------------------------------------------------------- Bundles
def test_batch_forbidden_entry_403_others_fine(as_token, client, world):
    w = world
    c = as_token("system/Patient.crus")
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{w.pa}"}},
        {"request": {"method": "GET", "url": f"Observation/{w.oa}"}},
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{w.pa}"}},
        {"resource": new_patient("Batchet"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": obs(w.pa, "batch-obs"), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": f"Patient/{w.pb}"}},
    ]}
    r = c.post(world.base, json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    got = [e["response"]["status"].split()[0] for e in r.json()["entry"]]
    assert got == ["200", "403", "403", "201", "403", "403"], got
    out = r.json()["entry"]
    assert out[0]["resource"]["id"] == w.pa
    for e in (out[1], out[2], out[4], out[5]):
        assert "resource" not in e
        assert w.code_a not in json.dumps(e) and w.oa not in json.dumps(e)
    assert count(client, w, "Patient?family=Batchet") == 1
    assert count(client, w, "Observation?code=batch-obs") == 0
    assert client.get(f"{w.base}/Patient/{w.pb}").status_code == 200


@pytest.mark.parametrize("forbidden", [
    {"resource": {"resourceType": "Observation", "status": "final",
                  "code": {"text": "tx"}, "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"}},
     "request": {"method": "POST", "url": "Observation"}},
    {"request": {"method": "GET", "url": "Observation?code=x"}},
    {"request": {"method": "DELETE", "url": "Observation?code=x"}},
    {"request": {"method": "GET", "url": "Practitioner/nope"}},
])
def test_transaction_with_forbidden_entry_is_403_and_stores_nothing(as_token, client, world,
                                                                     forbidden):
    w = world
    c = as_token("system/Patient.cruds")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
         "resource": new_patient("Transaksjonert"), "request": {"method": "POST",
                                                                 "url": "Patient"}},
        {"resource": {**new_patient("Oppdatert"), "id": w.pb},
         "request": {"method": "PUT", "url": f"Patient/{w.pb}"}},
        forbidden,
    ]}
    before = client.get(f"{w.base}/Patient/{w.pb}").headers["ETag"]
    r = c.post(world.base, json=bundle, headers=FHIR)
    assert r.status_code == 403, r.text
    assert_no_data(r, w, allow=(w.pb,))
    assert count(client, w, "Patient?family=Transaksjonert") == 0
    assert client.get(f"{w.base}/Patient/{w.pb}").headers["ETag"] == before


# ---------------------------------------------------------------- includes, chains, _has
def test_include_leaves_out_unreadable_types(as_token, world):
    w = world
    c = as_token("system/Observation.rs")
    r = c.get(f"{w.base}/Observation?code={w.code_a}&_include=Observation:subject"
              "&_include=Observation:performer")
    assert r.status_code == 200, r.text
    assert {e["resourceType"] for e in entries(r.json())} == {"Observation"}
    r = c.get(f"{w.base}/Observation?code={w.code_a}&_include=*")
    assert {e["resourceType"] for e in entries(r.json())} == {"Observation"}
    # with Patient access the Patient comes, the Practitioner still not
    c = as_token("system/Observation.rs system/Patient.r")
    r = c.get(f"{w.base}/Observation?code={w.code_a}&_include=Observation:subject"
              "&_include=Observation:performer")
    assert ids_of(r.json()) == {w.oa, w.pa}


def test_revinclude_leaves_out_unreadable_types(as_token, world):
    w = world
    c = as_token("system/Patient.rs")
    r = c.get(f"{w.base}/Patient?_id={w.pa}&_revinclude=Observation:subject")
    assert r.status_code == 200 and ids_of(r.json()) == {w.pa}
    c = as_token("system/Practitioner.rs system/Patient.rs")
    r = c.get(f"{w.base}/Practitioner?_id={w.pr}&_revinclude=Observation:performer"
              "&_include:iterate=Observation:subject")
    assert r.status_code == 200 and ids_of(r.json()) == {w.pr}, ids_of(r.json())
    # iterate through a permitted type does not open a forbidden one
    c = as_token("system/Practitioner.rs system/Observation.rs")
    r = c.get(f"{w.base}/Practitioner?_id={w.pr}&_revinclude=Observation:performer"
              "&_include:iterate=Observation:subject")
    assert ids_of(r.json()) == {w.pr, w.oa, w.ob}, ids_of(r.json())


def test_chain_through_unreadable_type_reveals_nothing(as_token, world):
    """Observation access only: a chain into Patient must not test Patient data. The server
    answers as if the Patients could not be seen: 200 with no match."""
    w = world
    full = as_token("system/*.rs").get(f"{w.base}/Observation?subject:Patient.family=Eigenpasient")
    assert ids_of(full.json()) == {w.oa}  # the chain works for a caller that may read Patients
    c = as_token("system/Observation.rs")
    r = c.get(f"{w.base}/Observation?subject:Patient.family=Eigenpasient")
    assert r.status_code == 200 and ids_of(r.json()) == set() and r.json()["total"] == 0, (
        "chained search through Patient without Patient access matched", r.text)
    r = c.get(f"{w.base}/Observation?subject.family=Eigenpasient")  # untyped chain
    assert r.status_code == 200 and ids_of(r.json()) == set()


def test_has_through_unreadable_type_reveals_nothing(as_token, world):
    """The server answers as if no Observations existed (200, nothing matched): the result
    does not depend on Observations the token cannot read."""
    w = world
    q = f"Patient?_has:Observation:subject:code={w.code_a}"
    full = as_token("system/*.rs").get(f"{w.base}/{q}")
    assert ids_of(full.json()) == {w.pa}
    r = as_token("system/Patient.rs").get(f"{w.base}/{q}")
    assert r.status_code == 200 and ids_of(r.json()) == set(), (
        "_has:Observation matched without Observation access", r.text)
    r = as_token("system/Patient.rs").get(f"{w.base}/{q}&_summary=count")
    assert r.status_code == 200 and r.json()["total"] == 0
    # and the negation cannot be used to learn it either
    r = as_token("system/Patient.rs").get(f"{w.base}/Patient?_id={w.pa},{w.pb}"
                                          f"&_has:Observation:subject:code:not={w.code_a}")
    assert r.status_code in (200, 400) and w.pb not in ids_of(r.json() if r.status_code == 200
                                                              else {})


# ---------------------------------------------------------------- history and operations
def test_history_of_unpermitted_type_is_403(as_token, world):
    w = world
    c = as_token("system/Patient.rs")
    assert c.get(f"{w.base}/Patient/_history").status_code == 200
    for path in ("Observation/_history", f"Observation/{w.oa}/_history",
                 f"Observation/{w.oa}/_history/1"):
        r = c.get(f"{w.base}/{path}")
        assert r.status_code == 403, (path, r.text)
        assert_no_data(r, w, allow=(w.oa,))
    r = c.get(f"{w.base}/_history")
    assert r.status_code == 403 or {e["resourceType"] for e in entries(r.json())} <= {"Patient"}


def test_system_search_only_permitted_types(as_token, world):
    w = world
    r = as_token("system/Patient.rs").get(f"{w.base}?_type=Patient,Observation")
    assert r.status_code == 403 or {e["resourceType"] for e in entries(r.json())} <= {"Patient"}
    r = as_token("system/Patient.rs").get(f"{w.base}?_id={w.oa}")
    assert r.status_code == 403 or ids_of(r.json()) == set()


def test_compartment_search_needs_the_member_type(as_token, world):
    w = world
    r = as_token("system/Patient.rs").get(f"{w.base}/Patient/{w.pa}/Observation")
    assert r.status_code == 403
    assert_no_data(r, w, allow=(w.pa,))
    r = as_token("system/Observation.rs").get(f"{w.base}/Patient/{w.pa}/Observation")
    assert r.status_code == 200 and ids_of(r.json()) == {w.oa}


def test_operations_respect_scopes(as_token, world):
    w = world
    c = as_token("system/Patient.rs")
    # $validate of a body touches no stored data
    r = c.post(f"{w.base}/Patient/$validate", json=new_patient(), headers=FHIR)
    assert r.status_code == 200
    # $validate mode=delete reads the stored resource: needs read access to its type
    params = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]}
    r = c.post(f"{w.base}/Observation/{w.oa}/$validate", json=params, headers=FHIR)
    assert r.status_code == 403, r.text
    r = c.post(f"{w.base}/Patient/{w.pa}/$validate", json=params, headers=FHIR)
    assert r.status_code == 200, r.text
    # an unknown operation answers 404 only to a caller that is allowed in at all
    r = c.get(f"{w.base}/Patient/{w.pa}/$everything")
    assert r.status_code in (403, 404)
    assert_no_data(r, w, allow=(w.pa,))
