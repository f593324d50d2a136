"""Faults of the storage are told to clients as they are (issue 30, item 12): a database
that cannot be reached is a 503 with ``Retry-After`` and an OperationOutcome on every path
— token verification, the OAuth endpoints and the bulk status routes included — and a full
disk is a 507 that says so (SQLite gave writes 500 "internal error" and reads "cannot
rollback - no transaction is active"). Nothing acknowledged is lost, and the server answers
again once the fault is gone.

PostgreSQL is made unreachable without touching the shared service: the app under test
reaches it through a TCP proxy of its own (:class:`Proxy`), which the test closes (new
connections are refused, open ones cut) and opens again.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import orjson
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from fkj.security.audit import flush_audit
from fkj.store.engine import make_engine
from tests.conftest import BASE_URL, LiveServer, auth_headers

FHIR = {"Content-Type": "application/fhir+json"}


class Proxy:
    """A TCP proxy on a loopback port of its own to ``target``; :meth:`down` refuses new
    connections and cuts the open ones (what a crashed or stopped database does to its
    clients), :meth:`up` listens again on the same port."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener: socket.socket | None = None
        self.port = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for s in self._open:
                try:  # a reset, not a polite end: the peer is gone
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    s.close()
                except OSError:
                    pass
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self.listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def transient(r, status: int = 503) -> dict:
    """A fault told as it is: the status, an OperationOutcome, and (503) ``Retry-After``."""
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/fhir+json"), r.headers
    issue = r.json()["issue"][0]
    if status == 503:
        assert r.headers["retry-after"] == "1" and issue["code"] == "transient", issue
    return issue


def _app(url: str, db):
    from fkj.app import build_fkj, create_app
    from fkj.config import Settings
    from fkj.security.audit.wiring import register_audit
    from fkj.wiring import wire

    fkj = build_fkj(Settings(database_url=url, base_url=BASE_URL, demo=True),
                    engine=make_engine(url))
    wire(fkj)
    register_audit(fkj, enabled=True)
    return fkj, create_app(fkj)


@pytest.fixture
def outage(db):
    """(fkj, asgi app, proxy, tenant): an app of its own whose PostgreSQL is behind a
    proxy."""
    if db.backend != "postgresql":
        pytest.skip("a database server that goes away: PostgreSQL (SQLite: the disk below)")
    u = make_url(db.url)
    proxy = Proxy(u.host or "127.0.0.1", u.port or 5432)
    url = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    fkj, app = _app(url, db)
    tenant = db.new_tenant()
    try:
        yield fkj, app, proxy, tenant
    finally:
        if proxy.listener is None:
            proxy.up()
        fkj.close()
        fkj.services.engine.dispose()
        proxy.down()


def _every_path(c, tenant: str, pid: str) -> list:
    base = f"/fhir/{tenant}"
    patient = orjson.dumps({"resourceType": "Patient", "name": [{"family": "Under"}]})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return [
        c.get(f"{base}/Patient/{pid}"),                               # a read (point read)
        c.get(f"{base}/Patient", params={"family": "Før"}),           # a search
        c.post(f"{base}/Patient/_search", content="family=F", headers=form),
        c.post(f"{base}/Patient", content=patient, headers=FHIR),     # a create
        c.post(f"{base}/Patient", content=patient,
               headers={**FHIR, "If-None-Exist": "family=Under"}),
        c.put(f"{base}/Patient/{pid}", headers=FHIR, content=orjson.dumps(
            {"resourceType": "Patient", "id": pid, "active": False})),
        c.delete(f"{base}/Patient/{pid}"),
        c.post(base, headers=FHIR, content=orjson.dumps(
            {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": {"resourceType": "Patient"},
                 "request": {"method": "POST", "url": "Patient"}}]})),
        c.get(f"{base}/Patient/{pid}/$everything"),
        c.get(f"{base}/$export-status/job-1"),                        # bulk status routes
        c.get(f"{base}/$export-status/job-1/Patient.ndjson"),
        c.post("/auth/token", content="grant_type=client_credentials", headers={
            **form, "Authorization": "Basic ZnJlbWRlOmhlbW1lbGln"}),  # OAuth
        c.post("/auth/introspect", content="token=x", headers={
            **form, "Authorization": "Basic ZnJlbWRlOmhlbW1lbGln"}),
        c.post("/auth/revoke", content="token=x", headers={
            **form, "Authorization": "Basic ZnJlbWRlOmhlbW1lbGln"}),
        c.get("/auth/authorize", params={"client_id": "fremde"}),
        c.get("/"),                                                   # the landing page
    ]


def test_an_unreachable_database_is_a_503_on_every_path(db, outage):
    fkj, app, proxy, tenant = outage
    c = TestClient(app, base_url=BASE_URL)
    c.headers.update(auth_headers(fkj, tenant))
    r = c.post(f"/fhir/{tenant}/Patient", headers=FHIR, content=orjson.dumps(
        {"resourceType": "Patient", "name": [{"family": "Før"}]}))
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert c.get(f"/fhir/{tenant}/Patient/{pid}").status_code == 200  # the token is cached
    flush_audit(fkj.services)

    proxy.down()
    # the revocation list is due for its refresh: the check that answered a plain-text 500
    # outside the request's error handling
    time.sleep(fkj.services.extras["auth"].token_service.revocations.refresh_interval)
    for r in _every_path(c, tenant, pid):
        transient(r)
    anon = TestClient(app, base_url=BASE_URL)
    # no token: refused without the database (the tenant is known to the process)
    assert anon.get(f"/fhir/{tenant}/Patient/{pid}").status_code == 401
    for path in (f"/fhir/{tenant}/.well-known/smart-configuration", "/auth/jwks"):
        assert anon.get(path).status_code == 200  # needs no database (the keys are loaded)

    # over a real server: an ordinary answer, and the connection stays open for the next
    server = LiveServer(app)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            f = s.makefile("rb")
            token = c.headers["authorization"]
            for path in (f"/fhir/{tenant}/Patient/{pid}", f"/fhir/{tenant}/Patient",
                         "/"):
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\r\n"
                          .encode())
                status = f.readline()
                assert status.startswith(b"HTTP/1.1 503"), status
                head = {}
                while (line := f.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    head[name.lower()] = value.strip()
                assert head["retry-after"] == "1" and "close" not in head.get("connection", "")
                body = orjson.loads(f.read(int(head["content-length"])))
                assert body["resourceType"] == "OperationOutcome"
    finally:
        server.stop()

    proxy.up()  # the database is back: the same app answers again, nothing was lost
    deadline = time.monotonic() + 30
    while (r := c.get(f"/fhir/{tenant}/Patient/{pid}")).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)
    assert r.json()["name"][0]["family"] == "Før"
    r = c.get(f"/fhir/{tenant}/Patient", params={"family": "Under"})
    assert r.status_code == 200 and r.json()["total"] == 0, r.text  # no write half-made
    assert c.post(f"/fhir/{tenant}/Patient", headers=FHIR, content=orjson.dumps(
        {"resourceType": "Patient"})).status_code == 201
    flush_audit(fkj.services)  # the records of the outage reach the chain


def test_a_server_started_while_the_database_is_down_answers_503(db, tmp_path):
    """A process (re)started during the outage comes up and tells the truth, instead of
    failing to start (the signing keys are loaded at their first use)."""
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL")
    from tests.ports import free_port
    url = make_url(db.url).set(host="127.0.0.1", port=free_port()) \
        .render_as_string(hide_password=False)  # nothing listens there
    fkj, app = _app(url, db)
    try:
        c = TestClient(app, base_url=BASE_URL)
        for r in (c.get("/fhir/0301/Patient/x"), c.get("/fhir/0301/metadata"),
                  c.get("/fhir/0301/Patient/x", headers={"Authorization": "Bearer a.b.c"}),
                  c.post("/auth/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": "Basic eDp5"}),
                  c.get("/auth/jwks"), c.get("/")):
            transient(r)
    finally:
        fkj.close()
        fkj.services.engine.dispose()


# ------------------------------------------------------------------------ a full disk
def _full_disk_app(db, url: str, pages: int | None = None):
    fkj, app = _app(url, db)
    if pages is not None:
        # SQLite's own bound on the file: past it, every write fails with SQLITE_FULL,
        # exactly as on a full disk
        @event.listens_for(fkj.services.engine, "connect")
        def _bound(dbapi_conn, _record):
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

        fkj.services.engine.dispose()  # every connection from now on has the bound
    return fkj, app


def _fill_until_full(c, tenant: str) -> object:
    text = "x" * 4000
    for _ in range(2000):
        r = c.post(f"/fhir/{tenant}/Patient", headers=FHIR, content=orjson.dumps(
            {"resourceType": "Patient", "name": [{"family": "Fyll", "text": text}]}))
        if r.status_code != 201:
            return r
    raise AssertionError("the disk never filled")


def _check_full_disk_answers(fkj, c, tenant: str, pid: str) -> None:
    r = _fill_until_full(c, tenant)
    issue = transient(r, 507)
    assert issue["code"] == "no-store" and "disk" in issue["diagnostics"], issue
    for _ in range(300):  # a read needs no room
        r = c.get(f"/fhir/{tenant}/Patient/{pid}")
        assert r.status_code == 200, r.text
    # their records wait in the journal, more than the chain has room for: the refusal,
    # when it comes, names the disk (it said "cannot rollback - no transaction is active")
    from fkj.security.audit.writer import AuditUnavailable
    with pytest.raises(AuditUnavailable) as refused:
        fkj.services.extras["audit_writer"].flush()  # a shipment now, instead of a wait
    assert "full" in str(refused.value) and "rollback" not in str(refused.value), refused
    for _ in range(3):  # an update, as a create: 507 each time, and nothing half-made
        r = c.put(f"/fhir/{tenant}/Patient/{pid}", headers=FHIR, content=orjson.dumps(
            {"resourceType": "Patient", "id": pid, "active": False,
             "name": [{"text": "y" * 8000}]}))
        transient(r, 507)
    assert c.get(f"/fhir/{tenant}/Patient/{pid}").json()["meta"]["versionId"] == "1"


@pytest.fixture
def sqlite_only(db):
    if db.backend != "sqlite":
        pytest.skip("a file on a full disk: SQLite (PostgreSQL's disk belongs to the server)")


def test_a_full_sqlite_file_is_a_507_that_says_so(db, sqlite_only, tmp_path):
    """SQLite's page limit gives the same SQLITE_FULL as a full disk, without one."""
    from fkj.store.migrate import upgrade
    url = f"sqlite:///{tmp_path / 'full.sqlite'}"
    upgrade(make_engine(url, app_role=False))
    from fkj.store.tenants import create_tenant
    create_tenant(make_engine(url), "0301", "Full", official=False)
    import sqlite3
    pages = sqlite3.connect(tmp_path / "full.sqlite").execute(
        "PRAGMA page_count").fetchone()[0] + 60
    fkj, app = _full_disk_app(db, url, pages)
    try:
        c = TestClient(app, base_url=BASE_URL)
        c.headers.update(auth_headers(fkj, "0301"))
        r = c.post("/fhir/0301/Patient", headers=FHIR,
                   content=orjson.dumps({"resourceType": "Patient", "active": True}))
        assert r.status_code == 201, r.text
        _check_full_disk_answers(fkj, c, "0301", r.json()["id"])
    finally:
        fkj.close()
        fkj.services.engine.dispose()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (root, where mounting is permitted), unmounted at the end."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the page-limit test covers SQLITE_FULL)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"tmpfs cannot be mounted here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_is_a_507_and_writes_work_again_with_room(db, sqlite_only, small_disk):
    from fkj.store.migrate import upgrade
    from fkj.store.tenants import create_tenant
    url = f"sqlite:///{small_disk / 'fkj.sqlite'}"
    upgrade(make_engine(url, app_role=False))
    create_tenant(make_engine(url), "0301", "Full", official=False)
    ballast = small_disk / "ballast"  # room that can be given back
    ballast.write_bytes(b"\0" * 2 * 1024 * 1024)
    fkj, app = _full_disk_app(db, url)
    try:
        c = TestClient(app, base_url=BASE_URL)
        c.headers.update(auth_headers(fkj, "0301"))
        r = c.post("/fhir/0301/Patient", headers=FHIR,
                   content=orjson.dumps({"resourceType": "Patient", "active": True}))
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        _check_full_disk_answers(fkj, c, "0301", pid)
        ballast.unlink()  # the operator frees space
        r = c.put(f"/fhir/0301/Patient/{pid}", headers=FHIR, content=orjson.dumps(
            {"resourceType": "Patient", "id": pid, "active": False}))
        assert r.status_code == 200, r.text
        assert c.get(f"/fhir/0301/Patient/{pid}").json()["active"] is False
        flush_audit(fkj.services)
    finally:
        fkj.close()
        fkj.services.engine.dispose()


def test_fault_mapping_follows_a_masked_cause():
    """The ROLLBACK after SQLite's own rollback fails; the disk is still the cause."""
    import sqlite3

    from fkj.store.faults import fault_for
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("PRAGMA max_page_count = 2")
    conn.execute("CREATE TABLE t (x TEXT)")
    try:
        try:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
        except sqlite3.OperationalError:
            conn.execute("ROLLBACK")
    except sqlite3.OperationalError as masked:
        assert "no transaction is active" in str(masked)
        assert fault_for(masked).status == 507
    else:
        pytest.fail("SQLite did not roll back by itself")
    assert fault_for(ValueError("a bug")) is None
    assert fault_for(OSError(28, "No space left on device", "/x")).status == 507
