"""Shared constants and helpers of the security tests."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

try:
    import fkj  # noqa: F401
except ImportError:  # running from a checkout without an editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from starlette.testclient import TestClient  # noqa: E402


BASE = "http://testserver"
TENANT = "0301"
FHIR_BASE = f"{BASE}/fhir/{TENANT}"
REDIRECT = "https://app.example.no/callback"

DIRECTORY = [
    {"kind": "practitioner", "id": "Practitioner/p1", "name": "Kari Lege",
     "hpr_number": "1234567", "pid": "01017012345", "roles": ["lege"],
     "unit": "Organization/u1", "organisation": "974600951"},
    {"kind": "citizen", "id": "Patient/pat1", "name": "Ola Nordmann", "pid": "12345678901"},
    {"kind": "citizen", "id": "Patient/pat2", "name": "Åse Nordmann", "pid": "10987654321"},
]


def directory(tenant: str) -> list[dict]:
    return DIRECTORY if tenant == TENANT else []




def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                         ).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(challenge: str, scope: str = "openid fhirUser launch/patient patient/*.rs",
                     **extra) -> dict:
    p = {"response_type": "code", "client_id": "app", "redirect_uri": REDIRECT,
         "scope": scope, "state": "st-123", "aud": FHIR_BASE, "code_challenge": challenge,
         "code_challenge_method": "S256"}
    p.update(extra)
    return {k: v for k, v in p.items() if v is not None}


def hidden_req(html: str) -> str:
    m = re.search(r'name="req" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def get_code(c: TestClient, params: dict, person: str, patient: str | None = None) -> str:
    r = c.get("/auth/authorize", params=params)
    assert r.status_code == 200, r.text
    req = hidden_req(r.text)
    r = c.post("/auth/login", data={"req": req, "person": person})
    if r.status_code == 200 and "Velg pasient" in r.text:
        assert patient is not None
        r = c.post("/auth/login", data={"req": hidden_req(r.text), "person": person,
                                        "patient": patient})
    assert r.status_code == 302, r.text
    q = query_of(r.headers["location"])
    assert r.headers["location"].startswith(REDIRECT + "?")
    assert q["state"] == params["state"]
    return q["code"]


def exchange(c: TestClient, code: str, verifier: str | None, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": "app"}
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(extra)
    return c.post("/auth/token", data=data)
