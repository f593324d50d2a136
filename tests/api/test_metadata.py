"""GET /metadata: the CapabilityStatement names FHIR 4.0.1, the interactions and the search
parameters this server implements."""

from __future__ import annotations

import pytest

PATIENT_INTERACTIONS = {"read", "vread", "update", "patch", "delete", "history-instance",
                        "history-type", "create", "search-type"}


@pytest.fixture
def capability(client) -> dict:
    r = client.get(f"{client.base}/metadata")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    return r.json()


def _resource(cs: dict, rtype: str) -> dict:
    found = [res for res in cs["rest"][0]["resource"] if res["type"] == rtype]
    assert len(found) == 1, f"{rtype} listed {len(found)} times"
    return found[0]


def test_is_capability_statement_for_r4(capability):
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"] == "4.0.1"
    assert capability["status"] == "active"
    assert capability["kind"] == "instance"
    assert "application/fhir+json" in capability["format"]
    assert len(capability["rest"]) == 1 and capability["rest"][0]["mode"] == "server"


def test_implementation_url_is_the_tenant_base(client, capability):
    assert capability["implementation"]["url"].endswith(client.base)


def test_patient_interactions(capability):
    codes = [i["code"] for i in _resource(capability, "Patient")["interaction"]]
    assert set(codes) >= PATIENT_INTERACTIONS, codes
    assert len(codes) == len(set(codes))


def test_system_interactions_include_transaction_and_batch(capability):
    codes = {i["code"] for i in capability["rest"][0]["interaction"]}
    assert {"transaction", "batch"} <= codes, codes


@pytest.mark.parametrize("name,ptype", [("identifier", "token"), ("name", "string"),
                                        ("birthdate", "date"), ("family", "string"),
                                        ("_id", "token")])
def test_patient_search_params(capability, name, ptype):
    params = {p["name"]: p for p in _resource(capability, "Patient")["searchParam"]}
    assert name in params, sorted(params)
    assert params[name]["type"] == ptype


@pytest.mark.parametrize("rtype", ["Observation", "Encounter", "Practitioner", "Organization",
                                   "CareTeam", "Consent", "Binary", "AuditEvent"])
def test_other_types_are_listed_with_create_and_read(capability, rtype):
    codes = {i["code"] for i in _resource(capability, rtype)["interaction"]}
    assert {"create", "read"} <= codes


def test_metadata_needs_no_token(asgi_app, tenant):
    from starlette.testclient import TestClient
    anon = TestClient(asgi_app, base_url="http://testserver")
    r = anon.get(f"/fhir/{tenant}/metadata")
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "CapabilityStatement"
