"""A second FKJ authorisation server on a real port acts as a trusted external issuer."""

import socket
import threading
import time
import uuid

import httpx
import pytest
import uvicorn
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey
from sqlalchemy import create_engine
from starlette.applications import Starlette

from fkj.errors import Forbidden, Unauthorized
from fkj.security.authenticate import principal_from_request
from fkj.security.clients import register_client
from fkj.security.keys import KeyRing
from fkj.security.oauth import AuthSettings, auth_routes
from fkj.security.tokens import TokenService, TrustedIssuer
from fkj.store.schema import metadata

from sec_helpers import BASE, TENANT


@pytest.fixture
def remote(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'remote.sqlite'}")
    metadata.create_all(engine)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = AuthSettings(engine=engine, base_url=base, demo=True)
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=auth_routes(settings)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started
    yield base, engine, settings
    server.should_exit = True
    thread.join(5)
    engine.dispose()


def test_token_from_trusted_issuer(remote, engine):
    base, remote_engine, remote_settings = remote
    key = ECKey.generate_key("P-384", auto_kid=True)
    register_client(remote_engine, "vendor", client_type="backend", tenant=TENANT,
                    jwks={"keys": [key.as_dict(private=False)]}, scopes="system/*.rs")
    now = int(time.time())
    a = jose_jwt.encode({"alg": "ES384", "kid": key.kid}, {
        "iss": "vendor", "sub": "vendor", "aud": f"{base}/auth/token", "exp": now + 60,
        "jti": str(uuid.uuid4())}, key, algorithms=["ES384"])
    r = httpx.post(f"{base}/auth/token", data={
        "grant_type": "client_credentials", "scope": "system/Patient.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": a})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]

    trusted = TrustedIssuer(issuer=base, jwks_url=f"{base}/auth/jwks",
                            audience=f"{base}/fhir/{TENANT}", algorithms=("ES256",),
                            claim_map={"tenant": "tenant", "fkj://claims/kind": "kind"})
    local = TokenService(engine, KeyRing(engine), BASE, [trusted])
    p = local.verify(token)
    assert p.kind == "client" and p.tenant == TENANT and p.client_id == "vendor"
    assert p.scopes == {"system/Patient.rs"} and p.subject == "vendor"
    assert local._remote[base].fetches == 1
    for _ in range(20):  # cached: no refetch
        assert principal_from_request({"authorization": f"Bearer {token}"}, TENANT, local)
    assert local._remote[base].fetches == 1
    with pytest.raises(Forbidden):
        principal_from_request({"authorization": f"Bearer {token}"}, "4601", local)

    # wrong audience configured for the issuer -> rejected
    strict = TokenService(engine, KeyRing(engine), BASE, [TrustedIssuer(
        issuer=base, jwks_url=f"{base}/auth/jwks", audience="https://other/fhir",
        algorithms=("ES256",))])
    with pytest.raises(Unauthorized, match="audience"):
        strict.verify(token)

    # a key rotation at the issuer: unknown kid -> one (rate-limited) JWKS refetch
    remote_settings.keyring.rotate()
    new_token = remote_settings.token_service.issue_access_token(
        tenant=TENANT, subject="Practitioner/9", scope="user/*.rs", client_id="x",
        kind="practitioner", hpr_number="999")
    trusted.min_refetch_interval = 0.0
    assert local.verify(new_token).kind == "practitioner"
    assert local._remote[base].fetches == 2

    # a token signed by someone else claiming this issuer
    rogue = ECKey.generate_key("P-256", auto_kid=True)
    trusted.min_refetch_interval = 60.0
    forged = jose_jwt.encode({"alg": "ES256", "kid": rogue.kid}, {
        "iss": base, "sub": "x", "aud": f"{base}/fhir/{TENANT}", "exp": now + 60,
        "tenant": TENANT}, rogue, algorithms=["ES256"])
    with pytest.raises(Unauthorized, match="unknown kid"):
        local.verify(forged)
    assert local._remote[base].fetches == 2  # rate-limited, no refetch
