"""``patient/`` scopes confine the caller to its launch patient's compartment by every route.

What the server does, asserted consistently: a resource outside the compartment is
*not found* (404, not 403, so its existence is not confirmed) — for read, vread, history,
patch and $validate — and is simply absent from searches, includes, compartment searches,
counts and Bundle GET entries; writes that would touch another patient's record are refused.
"""

from __future__ import annotations

import json

import pytest

from tests.api.helpers import FHIR
from tests.authz.conftest import OTHER_FAMILY, assert_no_data, entries, ids_of, obs

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture(params=["patient/*.rs", "patient/Observation.rs patient/Patient.rs",
                        "patient/*.read"])
def me(request, as_token, world):
    """A reading patient/ token bound to world.pa."""
    return as_token(request.param, patient=world.pa)


@pytest.fixture
def writer(as_token, world):
    return as_token("patient/*.cruds", patient=world.pa)


def not_found_like_unknown(c, w, path_other: str, path_unknown: str):
    other, unknown = c.get(f"{w.base}/{path_other}"), c.get(f"{w.base}/{path_unknown}")
    assert other.status_code == 404, (path_other, other.status_code, other.text)
    assert unknown.status_code == 404
    allowed = tuple(x for x in (w.pb, w.ob) if x in path_other)
    assert_no_data(other, w, allow=allowed)
    return other


# ---------------------------------------------------------------- reads
def test_read_own_and_not_others(me, world):
    w = world
    assert me.get(f"{w.base}/Patient/{w.pa}").status_code == 200
    assert me.get(f"{w.base}/Observation/{w.oa}").status_code == 200
    not_found_like_unknown(me, w, f"Patient/{w.pb}", "Patient/finnes-ikke")
    not_found_like_unknown(me, w, f"Observation/{w.ob}", "Observation/finnes-ikke")
    not_found_like_unknown(me, w, f"Observation/{w.ob}/_history/1",
                           "Observation/finnes-ikke/_history/1")
    r = me.get(f"{w.base}/Patient/{w.pb}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 404  # not a 304 that confirms the version


def test_non_compartment_types_are_not_readable(me, world):
    """A Practitioner is in no patient's compartment: patient/*.rs does not reach it."""
    w = world
    r = me.get(f"{w.base}/Practitioner/{w.pr}")
    assert r.status_code in (403, 404)
    r = me.get(f"{w.base}/Practitioner")
    assert r.status_code in (200, 403) and (r.status_code == 403 or ids_of(r.json()) == set())


def test_history_of_other_patients_resources_is_not_found(me, world):
    w = world
    assert me.get(f"{w.base}/Observation/{w.oa}/_history").status_code == 200
    not_found_like_unknown(me, w, f"Observation/{w.ob}/_history", "Observation/finnes-ikke/_history")
    not_found_like_unknown(me, w, f"Patient/{w.pb}/_history", "Patient/finnes-ikke/_history")


def test_type_and_system_history_show_only_own(me, world):
    w = world
    r = me.get(f"{w.base}/Observation/_history")
    assert r.status_code == 200 and ids_of(r.json()) == {w.oa}
    r = me.get(f"{w.base}/_history")
    assert r.status_code in (200, 403)
    if r.status_code == 200:
        assert ids_of(r.json()) == {w.pa, w.oa}, ids_of(r.json())
        assert w.pb not in r.text and w.ob not in r.text and OTHER_FAMILY not in r.text


# ---------------------------------------------------------------- searches
def test_search_returns_only_own(me, world):
    w = world
    r = me.get(f"{w.base}/Observation")
    assert ids_of(r.json()) == {w.oa} and r.json()["total"] == 1
    r = me.get(f"{w.base}/Patient")
    assert ids_of(r.json()) == {w.pa}
    for q in (f"Observation?subject=Patient/{w.pb}", f"Observation?_id={w.ob}",
              f"Observation?code={w.code_b}", f"Patient?_id={w.pb}",
              f"Patient?family={OTHER_FAMILY}"):
        r = me.get(f"{w.base}/{q}")
        assert r.status_code == 200 and ids_of(r.json()) == set() and r.json()["total"] == 0, q
    r = me.post(f"{w.base}/Observation/_search", data={"subject": f"Patient/{w.pb}"})
    assert ids_of(r.json()) == set()


def test_summary_count_counts_only_own(me, client, world):
    w = world
    assert client.get(f"{w.base}/Observation?_summary=count").json()["total"] == 2
    assert me.get(f"{w.base}/Observation?_summary=count").json()["total"] == 1
    assert me.get(f"{w.base}/Patient?_summary=count").json()["total"] == 1
    r = me.get(f"{w.base}/Observation?code={w.code_b}&_summary=count")
    assert r.json()["total"] == 0


def test_compartment_url_of_other_patient_gives_nothing(me, world):
    w = world
    r = me.get(f"{w.base}/Patient/{w.pa}/Observation")
    assert ids_of(r.json()) == {w.oa}
    r = me.get(f"{w.base}/Patient/{w.pb}/Observation")
    assert r.status_code in (200, 403, 404)
    if r.status_code == 200:
        assert ids_of(r.json()) == set() and r.json()["total"] == 0
    else:
        assert_no_data(r, w, allow=(w.pb,))
    r = me.get(f"{w.base}/Patient/{w.pb}/Observation?_summary=count")
    assert r.status_code != 200 or r.json()["total"] == 0


def test_system_search_only_own(me, world):
    w = world
    r = me.get(f"{w.base}?_type=Patient,Observation")
    assert r.status_code in (200, 403)
    if r.status_code == 200:
        assert ids_of(r.json()) == {w.pa, w.oa}


def test_include_and_revinclude_cannot_pull_in_others(me, client, world):
    w = world
    # an own Observation that also names the other patient (performer) and a link to them
    mixed = client.post(f"{w.base}/Observation", headers=FHIR, json=obs(
        w.pa, "blandet", f"Patient/{w.pb}")).json()["id"]
    pa = client.get(f"{w.base}/Patient/{w.pa}").json()
    pa["link"] = [{"other": {"reference": f"Patient/{w.pb}"}, "type": "seealso"}]
    assert client.put(f"{w.base}/Patient/{w.pa}", json=pa, headers=FHIR).status_code == 200
    for q in ("Observation?_include=Observation:performer",
              "Observation?_include=Observation:subject&_include=Observation:performer",
              "Observation?_include=*",
              "Patient?_include=Patient:link",
              "Patient?_include=*&_revinclude=*",
              "Patient?_revinclude=Observation:subject&_revinclude=Observation:performer",
              "Observation?_include=Observation:performer"
              "&_revinclude:iterate=Observation:subject",
              "Observation?_include:iterate=*&_revinclude:iterate=*"):
        r = me.get(f"{w.base}/{q}")
        assert r.status_code == 200, (q, r.text)
        got = ids_of(r.json())
        assert got <= {w.pa, w.oa, mixed}, (q, got)
        assert w.pb not in got and w.ob not in got and w.pr not in got, q
    r = me.get(f"{w.base}/Observation?code=blandet&_include=Observation:performer")
    assert ids_of(r.json()) == {mixed}


def test_chain_and_has_cannot_probe_other_patients(me, world):
    w = world
    for q in (f"Observation?subject:Patient.family={OTHER_FAMILY}",
              f"Patient?_has:Observation:subject:code={w.code_b}",
              f"Observation?performer:Practitioner.family=Legesen&subject=Patient/{w.pb}"):
        r = me.get(f"{w.base}/{q}")
        assert r.status_code in (200, 400, 403), (q, r.text)
        if r.status_code == 200:
            assert ids_of(r.json()) == set() and r.json()["total"] == 0, q


# ---------------------------------------------------------------- Bundles
def test_transaction_and_batch_get_entries_are_filtered(me, world):
    w = world
    for btype in ("batch", "transaction"):
        bundle = {"resourceType": "Bundle", "type": btype, "entry": [
            {"request": {"method": "GET", "url": "Observation"}},
            {"request": {"method": "GET", "url": f"Patient/{w.pb}/Observation"}},
            {"request": {"method": "GET", "url": f"Observation?subject=Patient/{w.pb}"}},
            {"request": {"method": "GET", "url": "Patient?_revinclude=Observation:subject"}},
        ]}
        r = me.post(w.base, json=bundle, headers=FHIR)
        assert r.status_code == 200, (btype, r.text)
        results = [e.get("resource", {}) for e in r.json()["entry"]]
        assert ids_of(results[0]) == {w.oa}
        assert ids_of(results[1]) == set() and ids_of(results[2]) == set()
        assert ids_of(results[3]) == {w.pa, w.oa}
        assert w.pb not in json.dumps(results[3]) and w.ob not in r.text


def test_bundle_read_of_other_patient_is_not_found(me, world):
    w = world
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{w.pa}"}},
        {"request": {"method": "GET", "url": f"Observation/{w.ob}"}},
        {"request": {"method": "GET", "url": f"Patient/{w.pb}/_history"}},
    ]}
    r = me.post(w.base, json=batch, headers=FHIR)
    got = [e["response"]["status"].split()[0] for e in r.json()["entry"]]
    assert got == ["200", "404", "404"], got
    assert OTHER_FAMILY not in r.text and w.code_b not in r.text
    tx = {**batch, "type": "transaction"}
    r = me.post(w.base, json=tx, headers=FHIR)
    assert r.status_code == 404, r.text
    assert OTHER_FAMILY not in r.text and w.code_b not in r.text


# ---------------------------------------------------------------- writes
def unchanged(client, w, rtype, rid, etag):
    r = client.get(f"{w.base}/{rtype}/{rid}")
    assert r.status_code == 200, f"{rtype}/{rid} is gone: {r.status_code}"
    assert r.headers["ETag"] == etag, f"{rtype}/{rid} was changed: {r.text}"
    return r.json()


def test_writes_into_own_record_work(writer, world):
    w = world
    r = writer.post(f"{w.base}/Observation", json=obs(w.pa, "egen"), headers=FHIR)
    assert r.status_code == 201, r.text
    o = r.json()
    o["valueString"] = "ny verdi"
    assert writer.put(f"{w.base}/Observation/{o['id']}", json=o, headers=FHIR).status_code == 200
    assert writer.delete(f"{w.base}/Observation/{o['id']}").status_code in (200, 204)


def test_create_in_other_patients_record_refused(writer, client, world):
    w = world
    r = writer.post(f"{w.base}/Observation", json=obs(w.pb, "inntrenger"), headers=FHIR)
    assert r.status_code == 403, r.text
    r = writer.post(f"{w.base}/Patient", json={"resourceType": "Patient"}, headers=FHIR)
    assert r.status_code == 403, r.text
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": obs(w.pa, "inntrenger"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": obs(w.pb, "inntrenger"), "request": {"method": "POST", "url": "Observation"}},
    ]}
    assert writer.post(w.base, json=tx, headers=FHIR).status_code == 403
    assert client.get(f"{w.base}/Observation?code=inntrenger").json()["total"] == 0


def test_update_of_other_patients_resource_refused(writer, client, world):
    """Neither moving another patient's Observation into one's own record (body names the
    own patient) nor editing it in place."""
    w = world
    etag = client.get(f"{w.base}/Observation/{w.ob}").headers["ETag"]
    hijack = {**obs(w.pa, "kapret"), "id": w.ob}
    r = writer.put(f"{w.base}/Observation/{w.ob}", json=hijack, headers=FHIR)
    assert r.status_code in (403, 404), (r.status_code, r.text)
    in_place = {**obs(w.pb, "endret"), "id": w.ob}
    r = writer.put(f"{w.base}/Observation/{w.ob}", json=in_place, headers=FHIR)
    assert r.status_code in (403, 404), (r.status_code, r.text)
    unchanged(client, w, "Observation", w.ob, etag)


def test_update_of_other_patient_resource_itself_refused(writer, client, world):
    w = world
    etag = client.get(f"{w.base}/Patient/{w.pb}").headers["ETag"]
    r = writer.put(f"{w.base}/Patient/{w.pb}", headers=FHIR,
                   json={"resourceType": "Patient", "id": w.pb, "name": [{"family": "X"}]})
    assert r.status_code in (403, 404), r.text
    unchanged(client, w, "Patient", w.pb, etag)


def test_patch_of_other_patients_resource_refused(writer, client, world):
    w = world
    etag = client.get(f"{w.base}/Observation/{w.ob}").headers["ETag"]
    r = writer.patch(f"{w.base}/Observation/{w.ob}", headers=JSON_PATCH, content=json.dumps(
        [{"op": "replace", "path": "/subject/reference", "value": f"Patient/{w.pa}"}]))
    assert r.status_code == 404, r.text
    unchanged(client, w, "Observation", w.ob, etag)


def test_delete_of_other_patients_resource_refused(writer, client, world):
    w = world
    etag = client.get(f"{w.base}/Observation/{w.ob}").headers["ETag"]
    r = writer.delete(f"{w.base}/Observation/{w.ob}")
    assert r.status_code in (403, 404), (r.status_code, r.text)
    unchanged(client, w, "Observation", w.ob, etag)
    r = writer.delete(f"{w.base}/Patient/{w.pb}")
    assert r.status_code in (403, 404), (r.status_code, r.text)
    assert client.get(f"{w.base}/Patient/{w.pb}").status_code == 200


def test_conditional_writes_cannot_reach_other_patients(writer, client, world):
    w = world
    etag = client.get(f"{w.base}/Observation/{w.ob}").headers["ETag"]
    r = writer.delete(f"{w.base}/Observation?code={w.code_b}")
    assert r.status_code in (200, 204, 403, 404), r.text
    unchanged(client, w, "Observation", w.ob, etag)
    r = writer.put(f"{w.base}/Observation?code={w.code_b}", json=obs(w.pa, "kapret"),
                   headers=FHIR)
    unchanged(client, w, "Observation", w.ob, etag)
    r = writer.post(f"{w.base}/Observation", json=obs(w.pa, "betinget"), headers={
        **FHIR, "If-None-Exist": f"code={w.code_b}"})
    assert r.status_code in (201, 403, 404, 412), r.text
    assert w.code_b not in r.text and w.ob not in r.text


def test_transaction_cannot_delete_or_overwrite_other_patients(writer, client, world):
    w = world
    etag = client.get(f"{w.base}/Observation/{w.ob}").headers["ETag"]
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Observation/{w.ob}"}}]}
    r = writer.post(w.base, json=tx, headers=FHIR)
    assert r.status_code in (403, 404), r.text
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**obs(w.pa, "kapret"), "id": w.ob},
         "request": {"method": "PUT", "url": f"Observation/{w.ob}"}}]}
    r = writer.post(w.base, json=tx, headers=FHIR)
    assert r.status_code in (403, 404), r.text
    unchanged(client, w, "Observation", w.ob, etag)


def test_validate_delete_mode_of_other_patient_not_found(writer, world):
    w = world
    params = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]}
    r = writer.post(f"{w.base}/Observation/{w.ob}/$validate", json=params, headers=FHIR)
    assert r.status_code == 404, r.text


def test_patient_scope_without_patient_claim_sees_nothing(as_token, world):
    c = as_token("patient/*.rs")
    w = world
    assert c.get(f"{w.base}/Patient/{w.pa}").status_code in (403, 404)
    r = c.get(f"{w.base}/Observation")
    assert r.status_code in (200, 403) and (r.status_code == 403 or ids_of(r.json()) == set())
