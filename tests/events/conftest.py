"""Fixtures of the event tests: the event side registered on the session app (tight retry
timings), an HTTP receiver that can be stopped and restarted on the same port, and a NATS
server (JetStream) of the test session's own."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from tests.ports import free_port

FHIR = {"Content-Type": "application/fhir+json"}
BP = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "http://fkj.no/fhir/SubscriptionTopic/"


#: the receivers of these tests listen on loopback over plain http: the endpoint policy must
#: be told so (by default it refuses both, see test_endpoint_policy.py)
LOOPBACK_ALLOWED = {"allow_http": True, "allow_private": True, "allowed_networks": ""}


@pytest.fixture(scope="session")
def events(fkj_app):
    from fkj.events.delivery import EventConfig
    from fkj.events.wiring import register_events

    cfg = EventConfig(threads=4, poll=0.1, max_failures=3, retry_base=0.05, retry_max=0.3,
                      timeout=2.0, lease_margin=1.0, start=True, nats_url=None)
    worker = register_events(fkj_app, cfg)
    # already registered by the app's wiring: tighten the timings in place
    for k in ("poll", "max_failures", "retry_base", "retry_max", "timeout", "lease_margin"):
        setattr(worker.config, k, getattr(cfg, k))
    for k, v in LOOPBACK_ALLOWED.items():
        setattr(worker.config, k, v)
    if not worker.running:
        worker.start()
    yield worker
    worker.stop()  # before the session's database is dropped


@pytest.fixture(scope="session")
def ev_asgi(fkj_app, events):
    from fkj.app import create_app
    return create_app(fkj_app)


@pytest.fixture
def ev_client(ev_asgi, fkj_app, tenant):
    from starlette.testclient import TestClient

    from tests.conftest import BASE_URL, auth_headers
    c = TestClient(ev_asgi, base_url=BASE_URL)
    c.headers.update(auth_headers(fkj_app, tenant))
    c.tenant = tenant  # type: ignore[attr-defined]
    c.base = f"/fhir/{tenant}"  # type: ignore[attr-defined]
    return c


class Receiver:
    """A rest-hook endpoint: records every POSTed Bundle (and its headers)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.status = 200
        self.lock = threading.Lock()
        self.server = None
        self.host = host
        self.port = 0
        self.start()

    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with outer.lock:
                    if outer.status < 300:
                        outer.received.append(orjson.loads(body))
                        outer.headers.append(dict(self.headers))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return f"http://{self.host}:{self.port}/hook"

    def bundles(self, ntype=None):
        with self.lock:
            out = list(self.received)
        return [b for b in out if ntype is None or notification_type(b) == ntype]

    def wait(self, predicate, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return False


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    with contextlib.suppress(Exception):  # stopped by the test already
        r.stop()


def status_of(bundle: dict) -> dict:
    return {p["name"]: p for p in bundle["entry"][0]["resource"]["parameter"]}


def notification_type(bundle: dict) -> str:
    return status_of(bundle)["type"]["valueCode"]


def event_numbers(bundles: list[dict]) -> list[int]:
    out = []
    for b in bundles:
        for p in b["entry"][0]["resource"]["parameter"]:
            if p["name"] == "notification-event":
                out += [int(x["valueString"]) for x in p["part"] if x["name"] == "event-number"]
    return out


def focuses(bundles: list[dict]) -> list[str]:
    out = []
    for b in bundles:
        for p in b["entry"][0]["resource"]["parameter"]:
            if p["name"] == "notification-event":
                out += ["/".join(x["valueReference"]["reference"].split("/")[-2:])
                        for x in p["part"] if x["name"] == "focus"]
    return out


def subscription(topic: str, endpoint: str | None, *, filters=(), content="id-only",
                 channel="rest-hook", headers=(), heartbeat=None, max_count=None) -> dict:
    ch = {"type": channel, "payload": "application/fhir+json",
          "_payload": {"extension": [{"url": BP + "backport-payload-content",
                                      "valueCode": content}]}}
    if endpoint:
        ch["endpoint"] = endpoint
    if headers:
        ch["header"] = list(headers)
    exts = []
    if heartbeat:
        exts.append({"url": BP + "backport-heartbeat-period", "valueUnsignedInt": heartbeat})
    if max_count:
        exts.append({"url": BP + "backport-max-count", "valuePositiveInt": max_count})
    if exts:
        ch["extension"] = exts
    sub = {"resourceType": "Subscription", "status": "requested", "reason": "test",
           "criteria": TOPIC + topic, "channel": ch}
    if filters:
        sub["_criteria"] = {"extension": [{"url": BP + "backport-filter-criteria",
                                           "valueString": f} for f in filters]}
    return sub


def post(client, resource: dict) -> dict:
    r = client.post(f"{client.base}/{resource['resourceType']}", json=resource, headers=FHIR)
    assert r.status_code == 201, r.text
    return r.json()


def drop_subscriptions(fkj_app, tenant: str) -> None:
    """Delete every Subscription of ``tenant`` (as the operator): one left behind with an
    endpoint that fails is retried for the rest of the test session."""
    from sqlalchemy import select

    from fkj.events.tables import subscription_state
    from fkj.repository.repository import Repository
    from fkj.store.backend import scope
    from fkj.types import Principal
    with scope(fkj_app.services.engine, tenant) as conn:
        ids = conn.execute(select(subscription_state.c.id).where(
            subscription_state.c.tenant == tenant)).scalars().all()
    repo = Repository(fkj_app.services, Principal.system(tenant), tenant)
    for sid in ids:
        repo.delete("Subscription", sid)


def patient(family: str = "Hansen") -> dict:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Kari"]}]}


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory):
    """A JetStream-enabled nats-server of this test session (its own port and store)."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        pytest.fail("nats-server is not installed (needed by the NATS bridge tests)",
                    pytrace=False)
    port = free_port()
    store = tmp_path_factory.mktemp("nats")
    proc = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", str(store)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                err = proc.stderr.read().decode(errors="replace")[-2000:]
                pytest.fail(f"nats-server did not start on port {port}: {err}", pytrace=False)
            time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
