"""Forged and misused tokens at the FHIR routes: each fails closed (401 with
``WWW-Authenticate``, an OperationOutcome, no data), while the genuine token it was made from
works — so every test would fail if the check it targets were missing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from tests.authz.conftest import OWN_FAMILY, assert_no_data

SCOPE = "system/*.cruds"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def parts(token: str) -> tuple[dict, dict, str]:
    h, p, s = token.split(".")
    return json.loads(unb64(h)), json.loads(unb64(p)), s


def issue(ts, tenant: str, **kw) -> tuple[str, dict]:
    extra = kw.pop("extra", None)
    return ts.issue(tenant=tenant, subject="authz-test", scope=kw.pop("scope", SCOPE),
                    client_id=kw.pop("client_id", "authz-test"), extra=extra, **kw)


def get(c, world, token: str):
    return c.get(f"{world.base}/Patient/{world.pa}", headers={"Authorization": f"Bearer {token}"})


def refused(c, world, token: str):
    r = get(c, world, token)
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")
    assert_no_data(r, world, allow=(world.pa,))
    # and a write with it changes nothing
    w = c.post(f"{world.base}/Patient", json={"resourceType": "Patient", "name": [
        {"family": "Forfalsket"}]}, headers={"Authorization": f"Bearer {token}",
                                             "Content-Type": "application/fhir+json"})
    assert w.status_code == 401
    return r


@pytest.fixture
def genuine(token_service, world, anon):
    token, claims = issue(token_service, world.tenant)
    assert get(anon, world, token).status_code == 200  # the control
    return token, claims


def test_expired(token_service, anon, world):
    now = int(time.time())
    token, _ = issue(token_service, world.tenant,
                     extra={"exp": now - 1, "iat": now - 600, "nbf": now - 600})
    refused(anon, world, token)


def test_expired_after_first_use(token_service, anon, world):
    """A token that worked (and sits in the verification cache) stops working at exp."""
    token, _ = issue(token_service, world.tenant, lifetime=2)
    assert get(anon, world, token).status_code == 200
    time.sleep(2.2)
    refused(anon, world, token)


def test_not_yet_valid(token_service, anon, world):
    now = int(time.time())
    token, _ = issue(token_service, world.tenant, not_before=now + 120)
    refused(anon, world, token)
    token, _ = issue(token_service, world.tenant, extra={"iat": now + 120})
    refused(anon, world, token)


@pytest.mark.parametrize("aud", ["https://elsewhere.example/fhir", "{base}/fhir/9999",
                                 "{base}/fhir/{tenant}/", "{base}", ["https://x.example"]])
def test_wrong_audience(token_service, anon, world, aud):
    if isinstance(aud, str):
        aud = aud.format(base="http://testserver", tenant=world.tenant)
    token, _ = issue(token_service, world.tenant, extra={"aud": aud})
    refused(anon, world, token)


def test_audience_of_other_tenant_with_this_tenant_claim(token_service, anon, db, world):
    other = db.new_tenant()
    token, _ = issue(token_service, world.tenant, audience=f"http://testserver/fhir/{other}")
    refused(anon, world, token)


def test_conflicting_tenant_claims(token_service, anon, db, world):
    other = db.new_tenant()
    token, _ = issue(token_service, world.tenant, extra={"fkj://claims/tenant": other})
    refused(anon, world, token)


def test_wrong_issuer(token_service, anon, world):
    token, _ = issue(token_service, world.tenant, extra={"iss": "https://evil.example"})
    refused(anon, world, token)
    token, _ = issue(token_service, world.tenant, extra={"iss": "http://testserver/"})
    refused(anon, world, token)


def test_alg_none(genuine, anon, world):
    token, claims = genuine
    header, _, _ = parts(token)
    for alg in ("none", "None", "NONE"):
        h = b64(json.dumps({**header, "alg": alg}).encode())
        body = b64(json.dumps(claims).encode())
        for forged in (f"{h}.{body}.", f"{h}.{body}.AAAA"):
            refused(anon, world, forged)


def test_hs256_signed_with_public_key(genuine, token_service, anon, world):
    token, claims = genuine
    key = token_service.keyring.current()
    body = b64(json.dumps({**claims, "scope": "system/*.cruds"}).encode())
    secrets_to_try = [
        key.public_key.public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo),
        key.public_key.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo),
        json.dumps(key.public_jwk).encode(),
    ]
    for alg, digest in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384)):
        h = b64(json.dumps({"alg": alg, "typ": "at+jwt", "kid": key.kid}).encode())
        for secret in secrets_to_try:
            sig = hmac.new(secret, f"{h}.{body}".encode(), digest).digest()
            refused(anon, world, f"{h}.{body}.{b64(sig)}")


def test_tampered_signature(genuine, anon, world):
    token, _ = genuine
    h, p, s = token.split(".")
    raw = bytearray(unb64(s))
    for i in (0, len(raw) // 2, len(raw) - 1):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        refused(anon, world, f"{h}.{p}.{b64(bytes(bad))}")
    refused(anon, world, f"{h}.{p}.")
    refused(anon, world, f"{h}.{p}.{s[:-4]}")


@pytest.mark.parametrize("change", ["scope", "tenant", "exp", "patient-removed", "kind"])
def test_tampered_payload(genuine, token_service, anon, db, world, change):
    """Take a narrow token and try to widen it by editing the payload."""
    token, claims = issue(token_service, world.tenant, scope="patient/*.rs", patient=world.pb)
    assert get(anon, world, token).status_code == 404  # the narrow token works (and sees no pa)
    h, _, s = token.split(".")
    if change == "scope":
        claims["scope"] = "system/*.cruds"
    elif change == "tenant":
        other = db.new_tenant()
        claims["tenant"] = claims["fkj://claims/tenant"] = other
    elif change == "exp":
        claims["exp"] += 3600
    elif change == "patient-removed":
        claims.pop("patient")
        claims["scope"] = "user/*.rs"
    else:
        claims["fkj://claims/kind"] = "practitioner"
        claims["patient"] = world.pa
    refused(anon, world, f"{h}.{b64(json.dumps(claims).encode())}.{s}")


def test_unknown_kid(genuine, anon, world):
    _, claims = genuine
    rogue = ECKey.generate_key("P-256", auto_kid=True)
    for kid in ("not-a-known-kid", None):
        header = {"alg": "ES256", "typ": "at+jwt"}
        if kid:
            header["kid"] = kid
        forged = jose_jwt.encode(header, claims, rogue, algorithms=["ES256"])
        refused(anon, world, forged)


def test_foreign_key_with_our_kid(genuine, token_service, anon, world):
    _, claims = genuine
    rogue = ECKey.generate_key("P-256")
    forged = jose_jwt.encode({"alg": "ES256", "typ": "at+jwt",
                              "kid": token_service.keyring.current().kid},
                             claims, rogue, algorithms=["ES256"])
    refused(anon, world, forged)


def test_id_token_is_not_an_access_token(token_service, anon, world):
    id_token = token_service.issue_id_token(
        subject="authz-test", client_id=f"http://testserver/fhir/{world.tenant}",
        fhir_user="Practitioner/x",
        extra={"scope": SCOPE, "tenant": world.tenant, "fkj://claims/tenant": world.tenant,
               "fkj://claims/kind": "client", "jti": uuid.uuid4().hex})
    refused(anon, world, id_token)


def test_sealed_login_request_is_not_an_access_token(token_service, anon, world):
    sealed = token_service.seal({"tenant": world.tenant, "scope": SCOPE}, "authorize")
    refused(anon, world, sealed)


def test_revoked_with_token_service(genuine, token_service, anon, world):
    token, claims = genuine
    token_service.revoke(claims["jti"], claims["exp"], world.tenant)
    refused(anon, world, token)


def test_revoked_through_revocation_endpoint(token_service, anon, db, world):
    from fkj.security.clients import register_client

    cid = f"authz-{uuid.uuid4().hex[:8]}"
    register_client(db.engine, cid, client_type="confidential", client_secret="hemmelig-1",
                    redirect_uris=["https://app.example.no/cb"], scopes=SCOPE)
    token, _ = issue(token_service, world.tenant, client_id=cid)
    assert get(anon, world, token).status_code == 200  # used once: now in the verify cache
    r = anon.post("/auth/revoke", data={"token": token},
                  auth=(cid, "hemmelig-1"))
    assert r.status_code == 200, r.text
    refused(anon, world, token)


def test_revocation_by_another_client_has_no_effect(token_service, anon, db, world):
    """RFC 7009: a client can revoke only its own tokens (guards the test above)."""
    from fkj.security.clients import register_client

    cid = f"authz-{uuid.uuid4().hex[:8]}"
    register_client(db.engine, cid, client_type="confidential", client_secret="hemmelig-2",
                    redirect_uris=["https://app.example.no/cb"], scopes=SCOPE)
    token, _ = issue(token_service, world.tenant, client_id="someone-else")
    assert anon.post("/auth/revoke", data={"token": token},
                     auth=(cid, "hemmelig-2")).status_code == 200
    assert get(anon, world, token).status_code == 200


def test_citizen_token_with_invalid_acr(token_service, anon, world):
    # the citizen is the patient whose fødselsnummer is her token's pid (the access policy
    # gives a citizen her own record only)
    from tests.api.builders import fnr
    pnr = fnr()
    r = world.client.put(f"{world.base}/Patient/{world.pa}", json={
        "resourceType": "Patient", "id": world.pa, "name": [{"family": OWN_FAMILY}],
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": pnr}]})
    assert r.status_code == 200, r.text
    token, _ = issue(token_service, world.tenant, scope="patient/*.rs", patient=world.pa,
                     kind="citizen", acr="idporten-loa-high", pid=pnr)
    assert get(anon, world, token).status_code == 200
    token2, _ = issue(token_service, world.tenant, scope="patient/*.rs", patient=world.pa,
                      kind="citizen", acr="idporten-loa-high", pid=pnr, extra={"acr": "Level2"})
    refused(anon, world, token2)
