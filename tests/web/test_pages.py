"""Pages show values from the database as text, never as markup (issue 30, item 11c: the
landing page printed tenant names unescaped)."""

from __future__ import annotations

import itertools

import pytest
from starlette.testclient import TestClient

from fkj.security.clients import register_client
from fkj.store.tenants import create_tenant
from tests.conftest import BASE_URL

SCRIPT = "<script>alert('fkj')</script>"
_numbers = itertools.count(9000)


@pytest.fixture
def anon(asgi_app):
    return TestClient(asgi_app, base_url=BASE_URL, follow_redirects=False)


def test_the_landing_page_escapes_tenant_names(db, anon):
    nr = f"{next(_numbers):04d}"
    create_tenant(db.engine, nr, f'Bergen {SCRIPT} & "Co"', official=False)
    r = anon.get("/")
    assert r.status_code == 200
    assert SCRIPT not in r.text
    assert "&lt;script&gt;alert(&#39;fkj&#39;)&lt;/script&gt; &amp; &#34;Co&#34;" in r.text
    assert f'href="/fhir/{nr}/metadata"' in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script" not in csp


def test_the_login_page_escapes_client_names(db, anon, tenant):
    """The other pages (the demo login, the patient picker, errors) come from templates of
    the same autoescaping environment."""
    client_id = f"app-{tenant}"
    register_client(db.engine, client_id, client_type="public", name=SCRIPT,
                    redirect_uris=["https://app.example.no/cb"], scopes="user/*.rs")
    r = anon.get("/auth/authorize", params={
        "response_type": "code", "client_id": client_id,
        "redirect_uri": "https://app.example.no/cb", "scope": "user/Patient.rs",
        "aud": f"{BASE_URL}/fhir/{tenant}", "state": "s",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256"})
    assert r.status_code == 200, r.text
    assert SCRIPT not in r.text and "&lt;script&gt;" in r.text
    r = anon.get("/auth/authorize", params={"client_id": SCRIPT})
    assert r.status_code == 400 and SCRIPT not in r.text
