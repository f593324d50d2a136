import time
import uuid

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.testclient import TestClient

from fkj.errors import Unauthorized
from fkj.security.clients import get_client, list_clients, register_client
from fkj.security.oauth import AuthSettings, auth_routes, create_launch

from sec_helpers import (BASE, FHIR_BASE, REDIRECT, TENANT, authorize_params, directory,
                         exchange, get_code, hidden_req, pkce, query_of)

TOKEN_URL = f"{BASE}/auth/token"


# -- discovery ---------------------------------------------------------------------------------

def test_smart_configuration(client):
    doc = client.get(f"/fhir/{TENANT}/.well-known/smart-configuration").json()
    assert doc["issuer"] == BASE and doc["token_endpoint"] == TOKEN_URL
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"private_key_jwt",
                                                                 "client_secret_basic"}
    assert set(doc["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    for cap in ("launch-ehr", "launch-standalone", "permission-v2", "authorize-post",
                "context-ehr-encounter", "client-confidential-asymmetric"):
        assert cap in doc["capabilities"]
    assert client.get("/fhir/abc/.well-known/smart-configuration").status_code == 404
    oidc = client.get("/.well-known/openid-configuration").json()
    assert oidc["jwks_uri"] == f"{BASE}/auth/jwks"
    keys = client.get("/auth/jwks").json()["keys"]
    assert keys and all("d" not in k for k in keys) and keys[0]["alg"] == "ES256"


# -- authorisation-code flow -----------------------------------------------------------------

def test_ehr_launch_full_flow(client, app_client, engine, ts):
    launch = create_launch(engine, TENANT, patient="Patient/pat1", encounter="enc9",
                           user="Practitioner/p1")
    verifier, challenge = pkce()
    params = authorize_params(challenge, scope="launch openid fhirUser patient/*.rs user/*.rs",
                              launch=launch, nonce="n-1")
    code = get_code(client, params, "Practitioner/p1")
    r = exchange(client, code, verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer" and body["patient"] == "pat1"
    assert body["encounter"] == "enc9" and body["need_patient_banner"] is False
    assert "refresh_token" not in body
    p = ts.verify(body["access_token"])
    assert p.kind == "practitioner" and p.hpr_number == "1234567" and p.patient == "pat1"
    assert p.encounter == "enc9" and p.fhir_user == "Practitioner/p1"
    assert {"patient/*.rs", "user/*.rs"} <= p.scopes
    id_claims = jose_jwt.decode(body["id_token"], ECKey.import_key(
        client.get("/auth/jwks").json()["keys"][0]), algorithms=["ES256"]).claims
    assert id_claims["fhirUser"] == "Practitioner/p1" and id_claims["aud"] == "app"
    assert id_claims["nonce"] == "n-1"


def test_ehr_launch_other_user_refused(client, app_client, engine):
    launch = create_launch(engine, TENANT, patient="pat1", user="Practitioner/p1")
    _, challenge = pkce()
    r = client.get("/auth/authorize", params=authorize_params(challenge, launch=launch,
                                                               scope="launch patient/*.rs"))
    r = client.post("/auth/login", data={"req": hidden_req(r.text), "person": "Patient/pat2"})
    assert r.status_code in (400, 403) and "location" not in r.headers


def test_standalone_launch_with_patient_picker(client, app_client, ts):
    verifier, challenge = pkce()
    params = authorize_params(challenge, scope="launch/patient patient/*.rs offline_access")
    r = client.get("/auth/authorize", params=params)
    assert r.status_code == 200 and "Logg inn" in r.text
    r = client.post("/auth/login", data={"req": hidden_req(r.text), "person": "Practitioner/p1"})
    assert r.status_code == 200 and "Velg pasient" in r.text
    assert "Patient/pat1" in r.text and "Patient/pat2" in r.text
    bad = client.post("/auth/login", data={"req": hidden_req(r.text), "person": "Practitioner/p1",
                                            "patient": "Patient/unknown"})
    assert bad.status_code == 400 and "location" not in bad.headers
    code = get_code(client, params, "Practitioner/p1", patient="Patient/pat2")
    body = exchange(client, code, verifier).json()
    assert body["patient"] == "pat2" and body["need_patient_banner"] is True
    assert body["refresh_token"]
    assert ts.verify(body["access_token"]).patient == "pat2"


def test_citizen_gets_own_record_only(client, app_client, ts):
    verifier, challenge = pkce()
    params = authorize_params(challenge, scope="launch/patient patient/*.rs")
    code = get_code(client, params, "Patient/pat1")  # no picker for citizens
    body = exchange(client, code, verifier).json()
    p = ts.verify(body["access_token"])
    assert p.kind == "citizen" and p.patient == "pat1" and p.pid == "12345678901"


def test_redirect_uri_mismatch_no_redirect(client, app_client):
    _, challenge = pkce()
    r = client.get("/auth/authorize", params=authorize_params(
        challenge, redirect_uri="https://app.example.no/callback/other"))
    assert r.status_code == 400 and "location" not in r.headers
    assert "redirect_uri" in r.text


def test_open_redirect_unknown_client(client, app_client):
    _, challenge = pkce()
    for params in (authorize_params(challenge, client_id="nobody",
                                    redirect_uri="https://evil.example/steal"),
                   authorize_params(challenge, redirect_uri="https://evil.example/steal")):
        r = client.get("/auth/authorize", params=params)
        assert r.status_code == 400
        assert "location" not in r.headers and "evil.example" not in r.text


@pytest.mark.parametrize("method", ["plain", None])
def test_pkce_plain_or_missing_method_rejected(client, app_client, method):
    verifier, _ = pkce()
    params = authorize_params(verifier, code_challenge_method=method)
    r = client.get("/auth/authorize", params=params)
    assert r.status_code == 302
    q = query_of(r.headers["location"])
    assert r.headers["location"].startswith(REDIRECT)
    assert q["error"] == "invalid_request" and q["state"] == "st-123" and "code" not in q


def test_missing_code_challenge_rejected(client, app_client):
    params = authorize_params("x", code_challenge=None)
    q = query_of(client.get("/auth/authorize", params=params).headers["location"])
    assert q["error"] == "invalid_request"


def test_wrong_aud_rejected(client, app_client):
    _, challenge = pkce()
    q = query_of(client.get("/auth/authorize", params=authorize_params(
        challenge, aud="https://evil.example/fhir/0301")).headers["location"])
    assert q["error"] == "invalid_request"


def test_missing_pkce_verifier(client, app_client):
    verifier, challenge = pkce()
    code = get_code(client, authorize_params(challenge), "Patient/pat1")
    r = exchange(client, code, None)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert "access_token" not in r.json()
    # the code is burnt: even the right verifier does not work afterwards
    assert exchange(client, code, verifier).json()["error"] == "invalid_grant"


def test_wrong_pkce_verifier(client, app_client):
    _, challenge = pkce()
    other_verifier, _ = pkce()
    code = get_code(client, authorize_params(challenge), "Patient/pat1")
    r = exchange(client, code, other_verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_code_bound_to_redirect_uri_and_client(client, app_client, engine):
    register_client(engine, "app2", client_type="public", redirect_uris=[REDIRECT],
                    scopes="patient/*.rs")
    verifier, challenge = pkce()
    code = get_code(client, authorize_params(challenge), "Patient/pat1")
    assert exchange(client, code, verifier, client_id="app2").json()["error"] == "invalid_grant"
    r = exchange(client, code, verifier, redirect_uri=REDIRECT + "x")
    assert r.json()["error"] == "invalid_grant"


def test_authorization_code_reuse_revokes(client, app_client, ts):
    verifier, challenge = pkce()
    code = get_code(client, authorize_params(challenge, scope="patient/*.rs offline_access"),
                    "Patient/pat1")
    first = exchange(client, code, verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    assert ts.verify(access)
    second = exchange(client, code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    with pytest.raises(Unauthorized, match="revoked"):
        ts.verify(access)
    r = client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": "app",
                                         "refresh_token": first.json()["refresh_token"]})
    assert r.json()["error"] == "invalid_grant"


def test_code_expires(client, app_client, settings):
    settings.code_lifetime = 0
    verifier, challenge = pkce()
    code = get_code(client, authorize_params(challenge), "Patient/pat1")
    assert exchange(client, code, verifier).json()["error"] == "invalid_grant"


def test_authorize_post(client, app_client):
    _, challenge = pkce()
    r = client.post("/auth/authorize", data=authorize_params(challenge))
    assert r.status_code == 200 and hidden_req(r.text)


def test_login_pages_404_outside_demo(engine, app_client):
    settings = AuthSettings(engine=engine, base_url=BASE, demo=False, directory=directory)
    with TestClient(Starlette(routes=auth_routes(settings)), base_url=BASE,
                    follow_redirects=False) as c:
        assert c.post("/auth/login", data={"req": "x", "person": "Patient/pat1"}
                      ).status_code == 404
        assert c.get("/auth/login").status_code == 404
        _, challenge = pkce()
        r = c.get("/auth/authorize", params=authorize_params(challenge))
        assert r.status_code == 501 and "location" not in r.headers
        assert "HelseID/ID-porten er ikke konfigurert" in r.text


def test_forged_pending_request_rejected(client, app_client):
    r = client.post("/auth/login", data={"req": "e30.e30.e30", "person": "Patient/pat1"})
    assert r.status_code == 400 and "location" not in r.headers


# -- refresh tokens ---------------------------------------------------------------------------

def _refresh_pair(client):
    verifier, challenge = pkce()
    code = get_code(client, authorize_params(challenge,
                                             scope="patient/*.rs offline_access openid fhirUser"),
                    "Patient/pat1")
    return exchange(client, code, verifier).json()


def _refresh(client, rt, **extra):
    data = {"grant_type": "refresh_token", "client_id": "app", "refresh_token": rt}
    data.update(extra)
    return client.post("/auth/token", data=data)


def test_refresh_rotation(client, app_client, ts):
    first = _refresh_pair(client)
    r = _refresh(client, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert ts.verify(second["access_token"]).patient == "pat1"
    third = _refresh(client, second["refresh_token"], scope="patient/Observation.rs")
    assert third.status_code == 200 and third.json()["scope"] == "patient/Observation.rs"
    assert ts.verify(third.json()["access_token"]).scopes == {"patient/Observation.rs"}
    # down-scoping the access token does not shrink the family's grant
    assert _refresh(client, third.json()["refresh_token"]).json()["scope"] == \
        "fhirUser offline_access openid patient/*.rs"


def test_refresh_reuse_after_rotation_revokes_family(client, app_client, ts):
    first = _refresh_pair(client)
    second = _refresh(client, first["refresh_token"]).json()
    reuse = _refresh(client, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # the whole family is dead, including the newest refresh and access token
    assert _refresh(client, second["refresh_token"]).json()["error"] == "invalid_grant"
    with pytest.raises(Unauthorized, match="revoked"):
        ts.verify(second["access_token"])


def test_refresh_scope_escalation(client, app_client):
    first = _refresh_pair(client)
    for scope in ("patient/*.cruds", "user/*.rs", "patient/*.rs system/*.rs"):
        r = _refresh(client, first["refresh_token"], scope=scope)
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    assert _refresh(client, first["refresh_token"]).status_code == 200  # not burnt by refusals


# -- backend services ---------------------------------------------------------------------------

@pytest.fixture
def backend_key(engine):
    key = ECKey.generate_key("P-384", auto_kid=True)
    pub = key.as_dict(private=False)
    pub.update({"alg": "ES384", "use": "sig"})
    register_client(engine, "backend1", client_type="backend", tenant=TENANT, name="Fagsystem",
                    jwks={"keys": [pub]}, scopes="system/*.rs system/Observation.cruds")
    return key


def assertion(key, client_id="backend1", alg="ES384", **over):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240,
              "jti": str(uuid.uuid4()), "iat": now}
    claims.update(over)
    return jose_jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key,
                           algorithms=[alg])


def cc(client, a, scope="system/Observation.rs"):
    return client.post("/auth/token", data={
        "grant_type": "client_credentials", "scope": scope, "client_assertion": a,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})


def test_backend_services_flow(client, backend_key, ts):
    r = cc(client, assertion(backend_key), "system/Observation.rs system/Patient.rs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert "refresh_token" not in body and body["expires_in"] == 3600
    p = ts.verify(body["access_token"])
    assert p.kind == "client" and p.client_id == "backend1" and p.tenant == TENANT
    assert p.scopes == {"system/Observation.rs", "system/Patient.rs"}


def test_backend_rs384(client, engine, ts):
    key = RSAKey.generate_key(2048, auto_kid=True)
    register_client(engine, "backend-rsa", client_type="backend", tenant=TENANT,
                    jwks={"keys": [key.as_dict(private=False)]}, scopes="system/*.rs")
    r = cc(client, assertion(key, client_id="backend-rsa", alg="RS384"), "system/Patient.rs")
    assert r.status_code == 200, r.text
    r = cc(client, assertion(key, client_id="backend-rsa", alg="RS256"), "system/Patient.rs")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_replayed_client_assertion(client, backend_key):
    a = assertion(backend_key)
    assert cc(client, a).status_code == 200
    r = cc(client, a)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "replay" in r.json()["error_description"]


@pytest.mark.parametrize("over", [
    {"aud": f"{BASE}/auth/other"}, {"exp": int(time.time()) + 3600},
    {"exp": int(time.time()) - 5}, {"sub": "someone-else"}, {"jti": None},
])
def test_bad_client_assertions(client, backend_key, over):
    claims = {k: v for k, v in over.items()}
    a = assertion(backend_key, **claims)
    if over.get("jti", "x") is None:
        a = assertion(backend_key, jti=None)
    r = cc(client, a)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_assertion_signed_by_other_key(client, backend_key):
    rogue = ECKey.generate_key("P-384")
    rogue_with_kid = ECKey.import_key(rogue.as_dict(private=True), {"kid": backend_key.kid})
    r = cc(client, assertion(rogue_with_kid))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_backend_asking_for_user_scope(client, backend_key):
    for scope in ("user/Observation.rs", "system/Observation.rs patient/*.rs"):
        r = cc(client, assertion(backend_key), scope)
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = cc(client, assertion(backend_key), "system/Patient.cruds")  # beyond registration
    assert r.json()["error"] == "invalid_scope"


def test_public_client_cannot_use_client_credentials(client, app_client):
    r = client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": "app",
                                         "scope": "system/*.rs"})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


# -- confidential clients, introspection, revocation ---------------------------------------------

@pytest.fixture
def confidential(engine):
    return register_client(engine, "conf", client_type="confidential", tenant=TENANT,
                           redirect_uris=[REDIRECT], client_secret="s3cret!",
                           scopes="patient/*.rs")


def test_introspection(client, confidential, backend_key):
    token = cc(client, assertion(backend_key)).json()["access_token"]
    r = client.post("/auth/introspect", data={"token": token}, auth=("conf", "s3cret!"))
    body = r.json()
    assert r.status_code == 200 and body["active"] is True
    assert body["client_id"] == "backend1" and body["scope"] == "system/Observation.rs"
    assert body["tenant"] == TENANT
    r = client.post("/auth/introspect", data={"token": token[:-4] + "AAAA"},
                    auth=("conf", "s3cret!"))
    assert r.json() == {"active": False}
    r = client.post("/auth/introspect", data={"token": token}, auth=("conf", "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = client.post("/auth/introspect", data={"token": token, "client_id": "app"})
    assert r.status_code == 401


def test_revocation_endpoint(client, confidential, backend_key, ts, app_client):
    token = cc(client, assertion(backend_key)).json()["access_token"]
    r = client.post("/auth/revoke", data={
        "token": token, "client_assertion": assertion(backend_key),
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert r.status_code == 200
    with pytest.raises(Unauthorized, match="revoked"):
        ts.verify(token)
    r = client.post("/auth/introspect", data={"token": token}, auth=("conf", "s3cret!"))
    assert r.json() == {"active": False}
    # refresh token revocation kills the family
    pair = _refresh_pair(client)
    assert client.post("/auth/revoke", data={"token": pair["refresh_token"],
                                             "client_id": "app"}).status_code == 200
    assert _refresh(client, pair["refresh_token"]).json()["error"] == "invalid_grant"
    with pytest.raises(Unauthorized):
        ts.verify(pair["access_token"])


def test_client_registry(engine, app_client, confidential):
    assert get_client(engine, "conf").client_type == "confidential"
    assert get_client(engine, "conf").secret_hash != "s3cret!"
    assert [c.client_id for c in list_clients(engine, TENANT)] == ["app", "conf"]
    assert [c.client_id for c in list_clients(engine, "4601")] == ["app"]
    with pytest.raises(ValueError):
        register_client(engine, "bad", client_type="backend", jwks={"keys": [
            ECKey.generate_key("P-384").as_dict(private=True)]})
