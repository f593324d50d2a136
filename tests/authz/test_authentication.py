"""Authentication and tenant binding on every FHIR route shape.

- no token or an unusable one → 401, ``WWW-Authenticate: Bearer …`` and an OperationOutcome,
  before routing (so unknown types and operations answer 401 too);
- ``metadata`` and ``.well-known/smart-configuration`` are public;
- a valid token of another tenant → 403 on every route, no data in the body, nothing changed.
"""

from __future__ import annotations

import pytest

from tests.authz.conftest import assert_no_data
from tests.authz.routes import SHAPES, WRITES, send
from tests.conftest import auth_headers

BAD_AUTH = {
    "missing": None,
    "empty-bearer": "Bearer ",
    "garbage-bearer": "Bearer not.a.jwt",
    "basic": "Basic ZmtqOmZrag==",
    "token-without-scheme": "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
    "two-tokens": "Bearer a.b.c d.e.f",
}


def snapshot(client, w) -> dict:
    """What a refused request must not have changed."""
    out = {}
    for rtype, rid in (("Patient", w.pa), ("Patient", w.pb), ("Observation", w.oa),
                       ("Observation", w.ob), ("Practitioner", w.pr)):
        r = client.get(f"{w.base}/{rtype}/{rid}")
        out[f"{rtype}/{rid}"] = (r.status_code, r.headers.get("ETag"))
    for family in ("Overskrevet", "Inntrenger", "Lappet"):
        r = client.get(f"{w.base}/Patient?family={family}&_summary=count")
        out[family] = r.json()["total"]
    out["ny"] = client.get(f"{w.base}/Patient/ny-pasient-1").status_code
    out["history"] = client.get(f"{w.base}/_history?_summary=count").json().get("total")
    return out


@pytest.mark.parametrize("auth", list(BAD_AUTH))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_unauthenticated_is_401_on_every_route(anon, client, world, shape, auth):
    before = snapshot(client, world) if shape in WRITES else None
    headers = {"Authorization": BAD_AUTH[auth]} if BAD_AUTH[auth] is not None else {}
    r = send(anon, world, shape, headers=headers)
    assert r.status_code == 401, (shape, auth, r.status_code, r.text)
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer "), r.headers
    if r.request.method != "HEAD":
        assert_no_data(r, world)
        assert r.json()["issue"][0]["code"] == "login"
    if before is not None:
        assert snapshot(client, world) == before


def test_authentication_comes_before_body_parsing(anon, world):
    """An anonymous caller may not make the server parse (or reject) its request body."""
    r = anon.post(f"{world.base}/Patient", content=b'{"resourceType": "Patient", ',
                  headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 401, (r.status_code, r.text)
    r = anon.post(f"{world.base}/Patient", content=b"<Patient/>",
                  headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 401, (r.status_code, r.text)


def test_metadata_and_smart_configuration_are_public(anon, world):
    r = anon.get(f"{world.base}/metadata")
    assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement"
    security = r.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    r = anon.get(f"{world.base}/.well-known/smart-configuration")
    assert r.status_code == 200
    assert r.json()["authorization_endpoint"].endswith("/auth/authorize")
    # only GET metadata is public: metadata/x needs a token; POST metadata is no interaction
    assert anon.get(f"{world.base}/metadata/x").status_code == 401
    assert anon.post(f"{world.base}/metadata", json={}).status_code in (401, 404, 405)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_token_of_other_tenant_is_403_on_every_route(asgi_app, fkj_app, db, client, world,
                                                       shape):
    """A valid token for tenant A, sent to tenant B's URLs (B holds the data)."""
    from starlette.testclient import TestClient

    other = db.new_tenant()
    c = TestClient(asgi_app, base_url="http://testserver")
    c.headers.update(auth_headers(fkj_app, other, scope="system/*.cruds"))
    before = snapshot(client, world)
    r = send(c, world, shape)
    assert r.status_code == 403, (shape, r.status_code, r.text)
    if r.request.method != "HEAD":
        assert_no_data(r, world)
        assert r.json()["issue"][0]["code"] == "forbidden"
    assert snapshot(client, world) == before
    # and the same token is good for its own tenant
    assert c.get(f"/fhir/{other}/Patient").status_code == 200


@pytest.mark.parametrize("shape", ["read", "search-type", "transaction", "history-tenant"])
def test_patient_token_of_other_tenant_is_403(as_token, db, world, shape):
    """A patient/ token minted for another tenant with a patient id that exists here."""
    other = db.new_tenant()
    c = as_token("patient/*.cruds", tenant=other, patient=world.pa)
    r = send(c, world, shape)
    assert r.status_code == 403, (shape, r.status_code, r.text)
    assert_no_data(r, world)
