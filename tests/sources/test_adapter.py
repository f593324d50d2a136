"""The HTTP adapter on its own (httpx MockTransport): token, retries, circuit breaker,
cache, deadline."""

from __future__ import annotations

import time

import httpx

from fkj.sources.base import CircuitBreaker, PatientKey
from fkj.sources.fhir_adapter import AdapterConfig, FhirSourceAdapter

KEY = PatientKey("p1", "urn:oid:2.16.578.1.12.4.1.4.1", "08874031136")


def _adapter(handler, **cfg):
    config = AdapterConfig.from_dict({"name": "pll", "base_url": "http://pll.test",
                                      "client_id": "c", "client_secret": "s", **cfg})
    return FhirSourceAdapter(config, client=httpx.Client(transport=httpx.MockTransport(handler)))


def _bundle():
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "MedicationStatement", "id": "m1", "status": "active",
        "subject": {"reference": "Patient/pll-x"}}}]}


def test_token_search_and_localised_items():
    seen = []

    def handler(req: httpx.Request):
        seen.append((req.method, req.url.path, req.headers.get("authorization"),
                     req.content.decode()))
        if req.url.path == "/token":
            return httpx.Response(200, json={"access_token": "T", "expires_in": 300})
        return httpx.Response(200, json=_bundle())

    a = _adapter(handler)
    r = a.fetch(KEY, time.monotonic() + 1)
    assert r.ok and len(r.items) == 1
    item = r.items[0]
    assert item["meta"]["source"] == "http://pll.test"
    assert item["subject"]["reference"] == "Patient/p1"
    assert seen[0][1] == "/token" and "client_credentials" in seen[0][3]
    assert seen[1][2] == "Bearer T" and "08874031136" not in str(seen[1][1])  # not in the URL
    assert "patient%3Aidentifier" in seen[1][3]


def test_an_item_naming_the_person_by_identifier_is_localised_too():
    """National services name persons by fødselsnummer: such an item is about the local
    patient (the policy judges it on her), another person's stays unresolved (hidden)."""
    from fkj.repository.patients import UNRESOLVED, patients_of

    def handler(req: httpx.Request):
        if req.url.path == "/token":
            return httpx.Response(200, json={"access_token": "T"})
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                                         "entry": [{"resource": {
            "resourceType": "MedicationStatement", "id": f"m{i}", "status": "active",
            "subject": {"identifier": {"system": "http://hl7.no/fhir/NamingSystem/FNR",
                                       "value": value}}}} for i, value in
            enumerate(("08874031136", "13031353453"))]})

    mine, other = _adapter(handler).fetch(KEY, time.monotonic() + 1).items
    assert mine["subject"]["reference"] == "Patient/p1" and patients_of(mine) == {"p1"}
    assert patients_of(other) == {UNRESOLVED}


def test_retry_then_success_and_cache():
    calls = {"n": 0}

    def handler(req):
        if req.url.path == "/token":
            return httpx.Response(200, json={"access_token": "T"})
        calls["n"] += 1
        return httpx.Response(503) if calls["n"] == 1 else httpx.Response(200, json=_bundle())

    a = _adapter(handler, retries=2, cache_ttl_s=30)
    assert a.fetch(KEY, time.monotonic() + 1).ok and calls["n"] == 2
    r = a.fetch(KEY, time.monotonic() + 1)
    assert r.cached and calls["n"] == 2


def test_circuit_breaker_opens_and_recovers():
    state = {"fail": True, "n": 0}

    def handler(req):
        if req.url.path == "/token":
            return httpx.Response(200, json={"access_token": "T"})
        state["n"] += 1
        return httpx.Response(500) if state["fail"] else httpx.Response(200, json=_bundle())

    a = _adapter(handler, retries=0, breaker_threshold=2, breaker_reset_s=0.2, cache_ttl_s=0)
    assert a.fetch(KEY, time.monotonic() + 1).status == "error"
    assert a.fetch(KEY, time.monotonic() + 1).status == "error"
    r = a.fetch(KEY, time.monotonic() + 1)
    assert r.status == "circuit-open" and state["n"] == 2
    time.sleep(0.25)
    state["fail"] = False
    assert a.fetch(KEY, time.monotonic() + 1).ok and a.breaker.state == "closed"


def test_deadline_passed():
    a = _adapter(lambda req: httpx.Response(200, json={"access_token": "T"}))
    r = a.fetch(KEY, time.monotonic() - 1)
    assert r.status == "timeout"


def test_breaker_half_open_single_trial():
    b = CircuitBreaker(threshold=1, reset_s=0.05)
    b.failure()
    assert not b.allow()
    time.sleep(0.06)
    assert b.allow() and not b.allow()
    b.failure()
    assert b.state == "open"


def test_every_reference_to_the_services_patient_becomes_the_local_patient():
    """The policy judges a federated item on the local patient: the service's Patient is
    rewritten wherever the item names it (asserter, performer …); another person stays."""
    item = {"resourceType": "AllergyIntolerance", "id": "a1",
            "patient": {"reference": "Patient/kj-7"},
            "asserter": {"reference": "Patient/kj-7"},
            "recorder": {"reference": "Practitioner/kj-doc"},
            "note": [{"authorReference": {"reference": "Patient/kj-other"}}]}

    def handler(req):
        if req.url.path == "/token":
            return httpx.Response(200, json={"access_token": "T"})
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                                         "entry": [{"resource": item}]})

    a = _adapter(handler, types=["AllergyIntolerance"], cache_ttl_s=0)
    r = a.fetch(KEY, time.monotonic() + 1)
    got = r.items[0]
    assert got["patient"]["reference"] == "Patient/p1"
    assert got["patient"]["identifier"]["value"] == "08874031136"
    assert got["asserter"] == {"reference": "Patient/p1"}
    assert got["recorder"] == {"reference": "Practitioner/kj-doc"}
    assert got["note"][0]["authorReference"] == {"reference": "Patient/kj-other"}
    assert item["asserter"] == {"reference": "Patient/kj-7"}  # the answer is not changed
