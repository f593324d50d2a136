"""The cost of a search is bounded before any SQL runs (issue 30, item 7): too many
parameters, repeats of one, comma values, includes, sort keys or chain branches are a 400
OperationOutcome (``too-costly``) naming the parameter and the limit — on every path that
runs a search: GET and POST _search, compartments, conditional create/update/delete and
conditional references in Bundles, subscription criteria and $export's _typeFilter."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import pytest

from fkj.search.limits import SearchLimits
from tests.api.helpers import FHIR, create, patient
from tests.search.semantics_helpers import search

OVER = {  # what exceeds the default limits, and the parameter the 400 must name
    "parameters": ([("_tag", f"t{i}") for i in range(10)]
                   + [("family", f"f{i}") for i in range(5)]
                   + [("given", f"g{i}") for i in range(5)]
                   + [("gender", "male")], "gender"),
    "repeats": ([("name", "hans")] * 11, "name"),
    "values": ([("name", ",".join(f"n{i}" for i in range(101)))], "name"),
    "includes": ([("_include", "Patient:organization")] * 6
                 + [("_revinclude", "Observation:subject")] * 5, "_revinclude"),
    "sort": ([("_sort", "family,given,birthdate,gender,address,_id")], "_sort"),
}


def _too_costly(r, expression: str) -> str:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["code"] == "too-costly", issue
    assert issue["expression"] == [expression], issue
    assert "FKJ_SEARCH_" in issue["diagnostics"]
    return issue["diagnostics"]


@pytest.mark.parametrize("what", sorted(OVER))
@pytest.mark.parametrize("post", [False, True])
def test_limits_answer_400_naming_the_parameter(client, what, post):
    params, name = OVER[what]
    _too_costly(search(client, "Patient", params, post=post), name)


def test_the_finding_200_repeated_names(client):
    """The attack of the finding: 200 repeated name= took 30 s on PostgreSQL."""
    d = _too_costly(search(client, "Patient", [("name", "hans")] * 200), "name")
    assert "200 times" in d and "at most 10" in d


def test_within_the_limits_a_search_runs(client):
    create(client, patient("Hansen"))
    params = [("_tag:missing", "true")] * 10 + [("family", "Hans")] * 10
    r = search(client, "Patient", params + [("_sort", "family,given,birthdate,gender,_id")]
               + [("_include", "Patient:organization")] * 10)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["total"] == 1
    r = search(client, "Patient", [("_id", ",".join(f"x{i}" for i in range(100))),
                                   ("_type", "x")])
    assert r.status_code == 200, r.text[:300]


def test_type_lists_are_not_value_limited(client):
    from fkj.search.compartments import member_types
    types = sorted(set(member_types("Patient")) | {"Patient"})
    assert len(types) > 60
    r = client.get(f"{client.base}", params={"_type": ",".join(types * 2)})
    assert r.status_code == 200, r.text[:300]


def test_chain_branches_are_limited(client, fkj_app):
    """A chain through a reference to any type fans out to every type that has the next
    parameter, and multiplies at every level: each branch counts."""
    # Provenance.target refers to any type; _lastUpdated is a parameter of every type
    assert search(client, "Provenance", [("target._lastUpdated", "gt2020")]) \
        .status_code == 200
    with _limits(fkj_app, chain_branches=10):
        _too_costly(search(client, "Provenance", [("target._lastUpdated", "gt2020")]),
                    "target._lastUpdated")
        # naming the target type keeps it to one branch
        assert search(client, "Provenance", [("target:Patient._lastUpdated", "gt2020")]) \
            .status_code == 200
    nested = "_has:Observation:subject:_has:Provenance:target:agent"
    assert search(client, "Patient", [(nested, "Practitioner/x")]).status_code == 200
    with _limits(fkj_app, chain_branches=1):
        _too_costly(search(client, "Patient", [(nested, "Practitioner/x")]), nested)


@contextmanager
def _limits(fkj_app, **changes):
    old = fkj_app.settings.search_limits
    fkj_app.settings.search_limits = dataclasses.replace(old, **changes)
    try:
        yield
    finally:
        fkj_app.settings.search_limits = old


def test_compartment_searches_are_limited(client):
    p = create(client, patient("Hansen"))
    r = search(client, f"Patient/{p['id']}/Observation", [("code", "x")] * 11)
    _too_costly(r, "code")


def test_conditional_interactions_are_limited(client):
    p = create(client, patient("Hansen"))
    many = "&".join(["name=hans"] * 11)
    r = client.post(f"{client.base}/Patient", json=patient("Hansen"),
                    headers={**FHIR, "If-None-Exist": many})
    _too_costly(r, "name")
    r = client.put(f"{client.base}/Patient?{many}", json=patient("Hansen"), headers=FHIR)
    _too_costly(r, "name")
    r = client.delete(f"{client.base}/Patient?{many}")
    _too_costly(r, "name")
    r = client.patch(f"{client.base}/Patient?{many}", json=[
        {"op": "replace", "path": "/active", "value": True}],
        headers={"Content-Type": "application/json-patch+json"})
    _too_costly(r, "name")
    # nothing was written
    r = search(client, "Patient", [("_id", p["id"])])
    assert r.json()["total"] == 1
    assert search(client, "Patient", [("family", "Hansen")]).json()["total"] == 1


def test_bundle_conditional_references_are_limited(client):
    many = "&".join(["name=hans"] * 11)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "x"}, "subject": {"reference": f"Patient?{many}"}}},
        {"request": {"method": "GET", "url": f"Patient?{many}"}}]}
    r = client.post(client.base, json=bundle, headers=FHIR)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["issue"][0]["code"] == "too-costly"
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient?{many}"}}]}
    r = client.post(client.base, json=batch, headers=FHIR)
    assert r.status_code == 200, r.text[:300]
    out = r.json()["entry"][0]["response"]
    assert out["status"].startswith("400")
    assert out["outcome"]["issue"][0]["code"] == "too-costly"


def test_subscription_criteria_are_limited(client):
    criteria = "Patient?" + "&".join(["name=hans"] * 11)
    sub = {"resourceType": "Subscription", "status": "requested", "reason": "test",
           "criteria": "http://fkj.no/fhir/SubscriptionTopic/resource-change",
           "channel": {"type": "websocket", "payload": "application/fhir+json"},
           "_criteria": {"extension": [{
               "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                      "backport-filter-criteria", "valueString": criteria}]}}
    r = client.post(f"{client.base}/Subscription", json=sub, headers=FHIR)
    assert 400 <= r.status_code < 500, r.text[:300]
    assert "FKJ_SEARCH_MAX_REPEATS" in r.text


def test_export_type_filter_is_limited(fkj_app, tenant):
    from starlette.testclient import TestClient

    from fkj.app import create_app
    from fkj.bulk.routes import ensure_export_routes
    from tests.conftest import BASE_URL, auth_headers

    ensure_export_routes(fkj_app)
    c = TestClient(create_app(fkj_app), base_url=BASE_URL)
    flt = "Patient?" + "&".join(["name=hans"] * 11)
    r = c.get(f"/fhir/{tenant}/$export", params={"_typeFilter": flt},
              headers={**auth_headers(fkj_app, tenant), "Prefer": "respond-async"})
    _too_costly(r, "name")


def test_limits_come_from_the_environment():
    limits = SearchLimits.from_env({"FKJ_SEARCH_MAX_PARAMS": "5", "FKJ_SEARCH_TIMEOUT": "2.5",
                                    "FKJ_SEARCH_MAX_VALUES": ""})
    assert (limits.params, limits.timeout, limits.values) == (5, 2.5, 100)
    for bad in ({"FKJ_SEARCH_MAX_PARAMS": "many"}, {"FKJ_SEARCH_MAX_REPEATS": "0"},
                {"FKJ_SEARCH_TIMEOUT": "-1"}, {"FKJ_SEARCH_MAX_PARAMS": "100000"}):
        with pytest.raises(ValueError):
            SearchLimits.from_env(bad)


def test_searches_at_the_ceilings_do_not_fail(client, fkj_app):
    """The most an operator may configure still builds SQL both backends accept (SQLite
    refused 499 comma values of a string: expression tree too deep → 500). What takes too
    long stops at the timeout (PostgreSQL plans 250 repeats of name= for longer than 2 s)."""
    from fkj.search.limits import CEILING

    create(client, patient("Hansen"))
    ceilings = {k: v for k, v in CEILING.items() if k != "timeout"}
    many = ",".join(f"v{i}" for i in range(CEILING["values"] - 1)) + ",hans"
    with _limits(fkj_app, **ceilings, timeout=2):
        for params in ([("name", many)], [("name:contains", many)], [("name:exact", many)],
                       [("identifier", many)], [("name", "hans")] * CEILING["repeats"],
                       [("name:contains", "ans")] * CEILING["repeats"],
                       [("birthdate", "ne1970-01-01")] * CEILING["repeats"]):
            r = search(client, "Patient", params)
            assert r.status_code in (200, 400), (params[0][0], len(params), r.text[:300])
            if r.status_code == 400:
                assert r.json()["issue"][0]["code"] == "too-costly", r.text[:300]
