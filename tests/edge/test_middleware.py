"""The edge middleware on every route: ``Cache-Control: no-store`` unless a route says how it
may be cached (issue 30, item 11a), an exception no route answered becomes an
OperationOutcome on a connection that stays open (item 12: the token check's plain-text
``Internal Server Error``), and a refusal of an authenticated caller is audited as hers
(item 11b)."""

from __future__ import annotations

import socket

import orjson
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from fkj.security.audit.wiring import register_audit
from tests.auditflow.conftest import audit_rows
from tests.conftest import BASE_URL, LiveServer

FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def audited(fkj_app):
    register_audit(fkj_app, enabled=True)
    return fkj_app


def test_fhir_answers_are_not_cached(client, anon_client):
    """Every answer with patient data — and every error — says ``no-store``."""
    p = client.post(f"{client.base}/Patient", headers=FHIR, content=orjson.dumps(
        {"resourceType": "Patient", "name": [{"family": "Lager"}]}))
    pid = p.json()["id"]
    answers = [
        p, client.get(f"{client.base}/Patient/{pid}"),
        client.get(f"{client.base}/Patient/{pid}/_history/1"),
        client.get(f"{client.base}/Patient", params={"family": "Lager"}),
        client.post(f"{client.base}/Patient/_search", content="family=Lager",
                    headers={"Content-Type": "application/x-www-form-urlencoded"}),
        client.get(f"{client.base}/Patient/{pid}/_history"),
        client.head(f"{client.base}/Patient/{pid}"),
        client.post(client.base, headers=FHIR, content=orjson.dumps(
            {"resourceType": "Bundle", "type": "batch",
             "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}]})),
        client.get(f"{client.base}/Patient/nope"),
        client.get(f"{client.base}/metadata"),
        client.get(f"{client.base}/$export-status/nope"),
        anon_client.get(f"{client.base}/Patient/{pid}"),
        anon_client.get("/openapi.json"), anon_client.get("/"),
        anon_client.get("/nowhere"),
    ]
    for r in answers:
        assert r.headers.get("cache-control") == "no-store", (r.request.url, r.status_code,
                                                               r.headers)


def test_token_answers_are_not_cached_and_discovery_may_be(anon_client, tenant):
    r = anon_client.post("/auth/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 401
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    for path in ("/.well-known/openid-configuration", "/auth/jwks",
                 f"/fhir/{tenant}/.well-known/smart-configuration"):
        r = anon_client.get(path)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "public, max-age=300", path


@pytest.fixture
def anon_client(asgi_app):
    return TestClient(asgi_app, base_url=BASE_URL)


@pytest.fixture
def failing_app(fkj_app):
    """The app with one more route (as other layers add them) that fails with a bug."""
    from fkj.app import create_app

    async def broken(request):
        raise RuntimeError("a bug in a route of another layer")

    route = Route("/fhir/{tenant}/$broken-extra", broken, methods=["GET"])
    fkj_app.extra_routes.append(route)
    try:
        yield create_app(fkj_app)
    finally:
        fkj_app.extra_routes.remove(route)


def test_a_bug_in_any_route_is_an_operation_outcome(failing_app, tenant):
    r = TestClient(failing_app, base_url=BASE_URL).get(f"/fhir/{tenant}/$broken-extra")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/fhir+json")
    issue = r.json()["issue"][0]
    assert (issue["severity"], issue["code"]) == ("fatal", "exception")
    assert "a bug" not in r.text  # the details are logged, not shown


def test_the_connection_stays_open_after_a_500(failing_app, tenant):
    """Over a real server: the plain-text 500 page closed the connection; the
    OperationOutcome is an ordinary answer and the next request uses the same
    connection."""
    server = LiveServer(failing_app)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            f = s.makefile("rb")
            for path in (f"/fhir/{tenant}/$broken-extra", f"/fhir/{tenant}/metadata"):
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                status = f.readline()
                length = 0
                while (line := f.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    assert name.lower() != "connection" or "close" not in value.lower()
                body = f.read(length)
                if "broken" in path:
                    assert status.startswith(b"HTTP/1.1 500"), status
                    assert orjson.loads(body)["resourceType"] == "OperationOutcome"
                else:
                    assert status.startswith(b"HTTP/1.1 200"), (status, body[:200])
    finally:
        server.stop()


def test_refusals_of_an_authenticated_caller_are_audited_as_hers(audited, client):
    """406, 415, 413 and a malformed body, after the token was verified: the audit record
    names the caller, not "unauthenticated"."""
    t = client.tenant
    before = len(audit_rows(audited, t))
    big = b'{"resourceType":"Patient","text":"' + b"x" * (audited.settings.max_body_bytes)
    answers = [
        client.get(f"{client.base}/Patient", headers={"Accept": "application/xml"}),
        client.post(f"{client.base}/Patient", content=b"<Patient/>",
                    headers={"Content-Type": "application/xml"}),
        client.post(f"{client.base}/Patient", content=big + b'"}', headers=FHIR),
        client.post(f"{client.base}/Patient", content=b"{not json", headers=FHIR),
    ]
    assert [r.status_code for r in answers] == [406, 415, 413, 400]
    rows = audit_rows(audited, t)[before:]
    assert [(x["agent"], x["outcome"]) for x in rows] == [("fkj-cli", "4")] * 4, rows
    assert [x["event"]["outcomeDesc"][:3] for x in rows] == ["406", "415", "413", "400"]
