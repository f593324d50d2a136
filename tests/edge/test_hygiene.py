"""Control characters and malformed text in any request part are refused at the edge with a
400 OperationOutcome naming the part — before authentication, on every route — and nothing
of them reaches the audit log (issue 30, item 1: ``GET /fhir/4601/Patient/a%00b`` without a
token put U+0000 into an audit record, PostgreSQL refused it, and the log of every tenant
stopped)."""

from __future__ import annotations

import socket

import orjson
import pytest
from starlette.testclient import TestClient

from fkj.security.audit import flush_audit
from fkj.security.audit.wiring import register_audit
from tests.conftest import BASE_URL, auth_headers

FHIR = {"Content-Type": "application/fhir+json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
#: percent-encoded text a request part may not hold, and the character named
BAD = [("%00", "U+0000"), ("%01", "U+0001"), ("%0A", "U+000A"), ("%1F", "U+001F"),
       ("%7F", "U+007F"), ("%C2%85", "U+0085")]
NOT_UTF8 = ["%FF", "%C3", "%ED%A0%80"]  # a stray byte, a cut sequence, a lone surrogate


@pytest.fixture
def audited(fkj_app):
    register_audit(fkj_app, enabled=True)
    return fkj_app


@pytest.fixture
def anon(asgi_app):
    return TestClient(asgi_app, base_url=BASE_URL)


def refused(r, expression: str, text: str | None = None) -> dict:
    assert r.status_code == 400, (r.status_code, r.text)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    issue = body["issue"][0]
    assert issue["code"] == "invalid" and issue["expression"] == [expression], issue
    if text is not None:
        assert text in issue["diagnostics"], issue
    assert r.headers["cache-control"] == "no-store"
    return issue


def test_the_attack_request_is_refused_and_the_audit_log_keeps_working(audited, anon, client):
    """The finding itself: the anonymous request is refused before authentication (400,
    not 401), and the audit log still takes records (on PostgreSQL it stopped)."""
    r = anon.get(f"{client.base}/Patient/a%00b")
    refused(r, "http.path", "U+0000")
    assert "a\\x00b" in r.json()["issue"][0]["diagnostics"]  # shown escaped
    flush_audit(audited.services)  # raised "unsupported Unicode escape sequence" before
    p = client.post(f"{client.base}/Patient", headers=FHIR, content=orjson.dumps(
        {"resourceType": "Patient", "name": [{"family": "Etter"}]}))
    assert p.status_code == 201, p.text
    assert client.get(f"{client.base}/Patient/{p.json()['id']}").status_code == 200
    flush_audit(audited.services)


def test_the_attack_over_a_real_server(audited, live_server, tenant):
    """The same request as the attacker sent it, through uvicorn."""
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as s:
        s.sendall(f"GET /fhir/{tenant}/Patient/a%00b HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 400"), head[:200]
    assert b'"expression":["http.path"]' in head


@pytest.mark.parametrize("bad,char", BAD)
def test_path_segments(anon, client, bad, char):
    for c in (anon, client):  # refused before authentication: the same for both
        refused(c.get(f"{client.base}/Patient/a{bad}b"), "http.path", char)
        refused(c.get(f"{client.base}/Patient/x/_history/1{bad}"), "http.path", char)
        refused(c.delete(f"{client.base}/Patient/a{bad}b"), "http.path", char)


@pytest.mark.parametrize("bad", NOT_UTF8)
def test_text_that_is_not_utf8(anon, client, bad):
    for c in (anon, client):
        refused(c.get(f"{client.base}/Patient/a{bad}b"), "http.path", "not valid UTF-8")
        refused(c.get(f"{client.base}/Patient?family=a{bad}"), "http.family",
                "not valid UTF-8")


@pytest.mark.parametrize("bad,char", BAD)
def test_query_names_and_values(anon, client, bad, char):
    for c in (anon, client):
        refused(c.get(f"{client.base}/Patient?family=a{bad}b"), "http.family", char)
        shown_name = "fam\\x" + char[-2:].lower() + "ily"  # the name, escaped
        refused(c.get(f"{client.base}/Patient?_count=1&fam{bad}ily=x"), f"http.{shown_name}",
                char)
        refused(c.get(f"{client.base}?_type=Patient{bad}"), "http._type", char)


def test_legitimate_text_passes(client):
    """Non-ASCII text (æøå) in paths, queries and bodies, and TAB/CR/LF in body strings,
    are not control characters."""
    r = client.post(f"{client.base}/Patient", headers=FHIR, content=(
        b'{"resourceType":"Patient","name":[{"family":"\\u00d8deg\\u00e5rd","text":'
        b'"linje 1\\r\\nlinje\\t2"}]}'))
    assert r.status_code == 201, r.text
    assert r.json()["name"][0]["text"] == "linje 1\r\nlinje\t2"
    r = client.get(f"{client.base}/Patient?family=%C3%98deg%C3%A5rd")
    assert r.status_code == 200 and r.json()["total"] == 1, r.text
    r = client.post(f"{client.base}/Patient/_search", headers=FORM,
                    content="family=%C3%98deg%C3%A5rd")
    assert r.status_code == 200 and r.json()["total"] == 1, r.text


@pytest.mark.parametrize("header", ["Authorization", "Prefer", "If-Match", "If-None-Exist",
                                    "X-Request-Id", "Accept"])
def test_header_values(anon, client, header):
    for c in (anon, client):
        for bad in ("a\x00b", "a\x1bb", "a\x7fb", "a\nb"):
            r = c.get(f"{client.base}/Patient", headers={header: bad})
            refused(r, f"http.{header}", f"U+{ord(bad[1]):04X}")


def test_if_none_exist_is_checked_as_the_query_it_is(client):
    r = client.post(f"{client.base}/Patient", headers={**FHIR, "If-None-Exist":
                                                       "identifier=a%00b"},
                    content=orjson.dumps({"resourceType": "Patient", "active": True}))
    refused(r, "http.If-None-Exist", "U+0000")
    r = client.get(f"{client.base}/Patient", params={"active": "true"})
    assert r.json()["total"] == 0  # nothing was created


@pytest.mark.parametrize("bad,char", BAD)
def test_search_form_bodies(audited, client, bad, char):
    """``POST _search`` with a form body: refused as the body is read (after the token —
    an anonymous caller makes the server read nothing); the refusal is audited, storably,
    as the caller's."""
    from tests.auditflow.conftest import audit_rows
    before = len(audit_rows(audited, client.tenant))
    r = client.post(f"{client.base}/Patient/_search", headers=FORM,
                    content=f"_count=5&family=a{bad}b")
    refused(r, "http.family", char)
    r = client.post(f"{client.base}/_search", headers=FORM, content=f"a{bad}=1")
    assert r.status_code == 400
    rows = audit_rows(audited, client.tenant)[before:]  # chained: storable
    assert [(x["subtype"], x["outcome"], x["agent"]) for x in rows] == [
        ("search-type", "4", "fkj-cli"), ("search-system", "4", "fkj-cli")], rows
    assert char in rows[0]["event"]["outcomeDesc"]


@pytest.mark.parametrize("where,body,expression", [
    ("Patient", {"resourceType": "Patient", "name": [{"family": "a\x00b"}]},
     "Patient.name[0].family"),
    ("Patient", {"resourceType": "Patient", "name": [{"given": ["ok", "b\x07"]}]},
     "Patient.name[0].given[1]"),
    ("Patient", {"resourceType": "Patient", "extension": [{"url": "http://x\x1f"}]},
     "Patient.extension[0].url"),
    ("", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "a\x00"}]},
         "request": {"method": "POST", "url": "Patient"}}]},
     "Bundle.entry[0].resource.name[0].family"),
    ("", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/a\x00b"}}]},
     "Bundle.entry[0].request.url"),
    ("Patient/$validate", {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "gender": "\x0c"}}]},
     "Parameters.parameter[0].resource.gender"),
])
def test_json_bodies_name_the_element(client, where, body, expression):
    """FHIR strings hold no control characters but TAB, CR and LF (R4 §2.24 string; XML
    cannot carry them either); PostgreSQL cannot store U+0000. Refused cleanly, on both
    backends, naming the element."""
    url = f"{client.base}/{where}".rstrip("/")
    refused(client.post(url, headers=FHIR, content=orjson.dumps(body)), expression)
    assert client.get(f"{client.base}/Patient").json()["total"] == 0


def test_update_and_patch_bodies(client):
    p = client.post(f"{client.base}/Patient", headers=FHIR, content=orjson.dumps(
        {"resourceType": "Patient", "active": True})).json()
    url = f"{client.base}/Patient/{p['id']}"
    r = client.put(url, headers=FHIR, content=orjson.dumps(
        {"resourceType": "Patient", "id": p["id"], "name": [{"family": "x\x00"}]}))
    refused(r, "Patient.name[0].family")
    r = client.patch(url, headers={"Content-Type": "application/json-patch+json"},
                     content=orjson.dumps([{"op": "add", "path": "/name",
                                            "value": [{"family": "x\x00"}]}]))
    refused(r, "$[0].value[0].family")
    assert client.get(url).json().get("name") is None


OTHER_ROUTES = [
    ("GET", "/", {}), ("GET", "/openapi.json", {}), ("GET", "/auth/jwks", {}),
    ("GET", "/.well-known/openid-configuration", {}),
    ("GET", "/fhir/{t}/.well-known/smart-configuration", {}),
    ("GET", "/fhir/{t}/metadata", {}), ("GET", "/fhir/{t}", {}),
    ("GET", "/fhir/{t}/$export-status/job1", {}),
    ("DELETE", "/fhir/{t}/$export-status/job1", {}),
    ("GET", "/fhir/{t}/$export-status/job1/Patient.ndjson", {}),
    ("GET", "/auth/authorize", {}), ("POST", "/auth/token", {}),
    ("POST", "/auth/introspect", {}), ("POST", "/auth/revoke", {}),
    ("POST", "/auth/login", {}), ("GET", "/nowhere", {}),
]


@pytest.mark.parametrize("method,path,_", OTHER_ROUTES)
def test_every_route(anon, tenant, method, path, _):
    """The bulk status routes, the OAuth routes, discovery, the landing page, OpenAPI and
    unknown paths: the same refusal for the path, the query and the headers."""
    path = path.replace("{t}", tenant)
    refused(anon.request(method, f"{path}?x=a%00b"), "http.x", "U+0000")
    refused(anon.request(method, f"{path}/a%00b" if path != "/" else "/a%00b"), "http.path")
    refused(anon.request(method, path, headers={"X-Request-Id": "a\x01b"}),
            "http.X-Request-Id")


@pytest.mark.parametrize("path", ["/auth/token", "/auth/introspect", "/auth/revoke",
                                  "/auth/authorize", "/auth/login"])
def test_oauth_form_bodies(anon, path):
    refused(anon.post(path, headers=FORM, content="grant_type=client_credentials&"
                                                 "client_id=a%00b"), "http.client_id",
            "U+0000")
    refused(anon.post(path, headers=FORM, content="client_id=%FF"), "http.client_id",
            "not valid UTF-8")


def test_multipart_bodies_are_refused(anon, client):
    for c, path in ((anon, "/auth/token"), (client, f"{client.base}/Patient/_search")):
        r = c.post(path, files={"client_id": ("x", b"a\x00b")})
        assert r.status_code == 415, r.text
        assert r.json()["issue"][0]["expression"] == ["http.Content-Type"]


def test_basic_credentials_and_assertions_with_control_characters(anon):
    """Values decoded from a credential (Basic, a client assertion's unverified issuer) are
    looked up in the database: refused before that, as invalid client credentials."""
    import base64
    basic = base64.b64encode(b"a%00b:secret").decode()
    r = anon.post("/auth/token", headers={**FORM, "Authorization": f"Basic {basic}"},
                  content="grant_type=client_credentials&scope=system/Patient.rs")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    head = base64.urlsafe_b64encode(b'{"alg":"ES384"}').rstrip(b"=").decode()
    claims = base64.urlsafe_b64encode(b'{"iss":"a\\u0000b"}').rstrip(b"=").decode()
    r = anon.post("/auth/token", headers=FORM, content=(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
        f"client-assertion-type%3Ajwt-bearer&client_assertion={head}.{claims}.c2ln"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text


def test_token_claims_with_control_characters_are_refused(fkj_app, anon, tenant):
    """A signed token whose claims hold a control character does not become a principal
    (its subject would be written to the audit log)."""
    headers = auth_headers(fkj_app, tenant, subject="sys\x00tem")
    r = anon.get(f"/fhir/{tenant}/Patient", headers=headers)
    assert r.status_code == 401, r.text


def test_websocket_handshake(anon, tenant):
    from starlette.websockets import WebSocketDisconnect
    with pytest.raises(WebSocketDisconnect) as e, \
            anon.websocket_connect(f"/fhir/{tenant}/subscription-ws?x=%00"):
        pass
    assert e.value.code == 1008
