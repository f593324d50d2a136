import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from fkj.errors import Forbidden, Unauthorized
from fkj.security.authenticate import principal_from_request
from fkj.security.dev import mint_dev_token
from fkj.security.keys import KeyRing
from fkj.security.tokens import TokenService

from sec_helpers import BASE, FHIR_BASE, TENANT


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def practitioner_token(ts, **extra):
    return ts.issue(tenant=TENANT, subject="Practitioner/p1", scope="user/*.rs openid",
                    client_id="app", kind="practitioner", hpr_number="1234567",
                    pid="01017012345", organisation="974600951", roles=["lege"],
                    unit="Organization/u1", fhir_user="Practitioner/p1", extra=extra or None)


def parts(token):
    h, p, s = token.split(".")
    return (json.loads(base64.urlsafe_b64decode(h + "==")),
            json.loads(base64.urlsafe_b64decode(p + "==")), s)


def test_valid_practitioner_token_maps_to_principal(ts):
    token, claims = practitioner_token(ts)
    p = ts.verify(token, FHIR_BASE)
    assert p.kind == "practitioner" and p.tenant == TENANT and p.subject == "Practitioner/p1"
    assert p.hpr_number == "1234567" and p.pid == "01017012345" and p.roles == {"lege"}
    assert p.organisation == "974600951" and p.unit == "Organization/u1"
    assert p.scopes == {"user/*.rs", "openid"} and p.token_id == claims["jti"]
    assert claims["helseid://claims/hpr/hpr_number"] == "1234567"
    assert claims["fkj://claims/tenant"] == TENANT and claims["aud"] == FHIR_BASE


def test_citizen_token_and_v1_scope_mapping(ts):
    token, claims = ts.issue(tenant=TENANT, subject="Patient/pat1", scope="patient/*.read",
                             client_id="app", kind="citizen", pid="12345678901",
                             acr="idporten-loa-high", patient="pat1", fhir_user="Patient/pat1")
    p = ts.verify(token)
    assert p.kind == "citizen" and p.pid == "12345678901" and p.patient == "pat1"
    assert p.scopes == {"patient/*.rs"} and claims["acr"] == "idporten-loa-high"
    with pytest.raises(ValueError):
        ts.issue(tenant=TENANT, subject="Patient/pat1", scope="patient/*.rs", client_id="app",
                 kind="citizen", pid="1", acr="Level2")


def test_expired(ts):
    now = int(time.time())
    token, _ = practitioner_token(ts, exp=now - 1, iat=now - 100, nbf=now - 100)
    with pytest.raises(Unauthorized, match="expired"):
        ts.verify(token, FHIR_BASE)


def test_not_yet_valid(ts):
    now = int(time.time())
    token, _ = practitioner_token(ts, nbf=now + 60, exp=now + 3600)
    with pytest.raises(Unauthorized, match="not yet valid"):
        ts.verify(token, FHIR_BASE)
    ok, _ = practitioner_token(ts, nbf=now + 10)  # within leeway
    assert ts.verify(ok, FHIR_BASE).subject == "Practitioner/p1"


def test_wrong_audience(ts):
    token, _ = practitioner_token(ts)
    with pytest.raises(Unauthorized, match="audience"):
        ts.verify(token, f"{BASE}/fhir/4601")
    token2, _ = practitioner_token(ts, aud="https://elsewhere.example/fhir")
    with pytest.raises(Unauthorized, match="audience"):
        ts.verify(token2)


def test_wrong_issuer(ts, engine):
    token, _ = practitioner_token(ts, iss="https://evil.example")
    with pytest.raises(Unauthorized, match="issuer"):
        ts.verify(token, FHIR_BASE)


def test_alg_none(ts):
    token, claims = practitioner_token(ts)
    header, _, _ = parts(token)
    forged_header = b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": header["kid"]}).encode())
    body = b64(json.dumps(claims).encode())
    for forged in (f"{forged_header}.{body}.", f"{forged_header}.{body}.AAAA"):
        with pytest.raises(Unauthorized):
            ts.verify(forged, FHIR_BASE)


def test_hs256_signed_with_public_key(ts):
    token, claims = practitioner_token(ts)
    key = ts.keyring.current()
    h = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": key.kid}).encode())
    body = b64(json.dumps(claims).encode())
    secrets_to_try = [
        key.public_key.public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo),
        json.dumps(key.public_jwk).encode(),
    ]
    for secret in secrets_to_try:
        sig = hmac.new(secret, f"{h}.{body}".encode(), hashlib.sha256).digest()
        with pytest.raises(Unauthorized, match="algorithm"):
            ts.verify(f"{h}.{body}.{b64(sig)}", FHIR_BASE)


def test_tampered_signature(ts):
    token, _ = practitioner_token(ts)
    h, p, s = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(s + "=="))
    raw[10] ^= 0x01
    with pytest.raises(Unauthorized, match="signature"):
        ts.verify(f"{h}.{p}.{b64(bytes(raw))}", FHIR_BASE)


def test_tampered_payload(ts):
    token, claims = practitioner_token(ts)
    h, _, s = token.split(".")
    claims["scope"] = "system/*.cruds"
    with pytest.raises(Unauthorized, match="signature"):
        ts.verify(f"{h}.{b64(json.dumps(claims).encode())}.{s}", FHIR_BASE)


def test_tampered_header_kid_swap(ts):
    token, _ = practitioner_token(ts)
    _, p, s = token.split(".")
    h = b64(json.dumps({"alg": "ES384", "typ": "at+jwt",
                        "kid": ts.keyring.current().kid}).encode())
    with pytest.raises(Unauthorized):
        ts.verify(f"{h}.{p}.{s}", FHIR_BASE)


def test_unknown_kid_reloads_once(ts):
    _, claims = practitioner_token(ts)
    rogue = ECKey.generate_key("P-256", auto_kid=True)
    forged = jose_jwt.encode({"alg": "ES256", "kid": "not-a-known-kid", "typ": "at+jwt"},
                             claims, rogue, algorithms=["ES256"])
    time.sleep(0.25)  # past the global reload rate limit
    before = ts.keyring.reloads
    for _ in range(50):
        with pytest.raises(Unauthorized, match="unknown kid"):
            ts.verify(forged, FHIR_BASE)
    assert ts.keyring.reloads - before == 1


def test_other_server_key_with_our_kid_rejected(ts):
    """Signed by a foreign key but claiming our current kid: signature check fails."""
    _, claims = practitioner_token(ts)
    rogue = ECKey.generate_key("P-256")
    forged = jose_jwt.encode({"alg": "ES256", "kid": ts.keyring.current().kid, "typ": "at+jwt"},
                             claims, rogue, algorithms=["ES256"])
    with pytest.raises(Unauthorized, match="signature"):
        ts.verify(forged, FHIR_BASE)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c.d", "####.####.####",
                                     "e30.e30.e30", "W10.W10.AAAA", None, 12])
def test_malformed(ts, garbage):
    with pytest.raises(Unauthorized):
        ts.verify(garbage, FHIR_BASE)


def test_id_token_not_accepted_as_access_token(ts):
    id_token = ts.issue_id_token(subject="Practitioner/p1", client_id=FHIR_BASE,
                                 fhir_user="Practitioner/p1")
    with pytest.raises(Unauthorized):
        ts.verify(id_token, FHIR_BASE)


def test_revoked_immediately_and_in_other_process(ts, engine):
    token, claims = practitioner_token(ts)
    other = TokenService(engine, KeyRing(engine), BASE)  # a second process on the same DB
    assert other.verify(token).subject == "Practitioner/p1"
    ts.revoke(claims["jti"], claims["exp"], TENANT)
    with pytest.raises(Unauthorized, match="revoked"):
        ts.verify(token)  # same process: immediately
    time.sleep(1.05)
    with pytest.raises(Unauthorized, match="revoked"):
        other.verify(token)  # other process: within ~1 s


def test_key_rotation(ts, engine):
    old, _ = practitioner_token(ts)
    old_kid = parts(old)[0]["kid"]
    other = TokenService(engine, KeyRing(engine), BASE)  # started before the rotation
    new_kid = ts.keyring.rotate()
    new, _ = practitioner_token(ts)
    assert parts(new)[0]["kid"] == new_kid != old_kid
    assert ts.verify(old).subject == ts.verify(new).subject == "Practitioner/p1"
    kids = {k["kid"] for k in ts.keyring.jwks()["keys"]}
    assert kids == {old_kid, new_kid}
    assert all("d" not in k for k in ts.keyring.jwks()["keys"])
    time.sleep(0.25)
    assert other.verify(new).subject == "Practitioner/p1"  # unknown kid -> one reload


def test_principal_from_request(ts):
    token, _ = practitioner_token(ts)
    p = principal_from_request({"authorization": f"Bearer {token}"}, TENANT, ts)
    assert p.hpr_number == "1234567"
    with pytest.raises(Forbidden):
        principal_from_request({"authorization": f"Bearer {token}"}, "4601", ts)
    for headers in ({}, {"authorization": "Basic abc"}, {"authorization": "Bearer "},
                    {"authorization": "Bearer x.y.z"}):
        with pytest.raises(Unauthorized) as exc:
            principal_from_request(headers, TENANT, ts)
        assert exc.value.headers["WWW-Authenticate"] == \
            'Bearer realm="fkj", error="invalid_token"'


def test_mint_dev_token(engine, ts):
    with pytest.raises(Forbidden):
        mint_dev_token(engine, TENANT, "system/*.rs", demo=False)
    token = mint_dev_token(engine, TENANT, "system/*.rs", demo=True, base_url=BASE)
    p = ts.verify(token)
    assert p.kind == "client" and p.scopes == {"system/*.rs"} and p.client_id == "fkj-cli"


def test_verify_cost(ts):
    token, _ = practitioner_token(ts)
    ts.verify(token)
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        ts.verify(token)
    per_call_us = (time.perf_counter() - t0) / n * 1e6
    print(f"verify cost: {per_call_us:.1f} us")
    assert per_call_us < 300
