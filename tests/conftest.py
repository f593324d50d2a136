"""Test fixtures: every API test runs on SQLite and, when FKJ_TEST_DATABASE_URL is set, on
PostgreSQL too. If that variable is set and PostgreSQL cannot be reached, the run fails —
the PostgreSQL half is never silently skipped.

Each test gets a tenant of its own (tenants isolate data), so tests share one migrated
database per backend and still never see each other's resources.
"""

from __future__ import annotations

import itertools
import os
import uuid
import warnings

import pytest
from sqlalchemy import text

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)
# The test process runs background threads (event dispatcher, live servers); forking worker
# processes from a multi-threaded process can deadlock, so imports run in-process here (the
# pipelined pool is exercised by `fkj bench bulk`, whose importer runs in a process of its own).
os.environ.setdefault("FKJ_IMPORT_WORKERS", "0")
# audit journals of the test servers (in-process and subprocesses) live in a temporary folder,
# not in ./fkj-data of the checkout
if "FKJ_AUDIT_JOURNAL_DIR" not in os.environ:
    import tempfile
    os.environ["FKJ_AUDIT_JOURNAL_DIR"] = tempfile.mkdtemp(prefix="fkj-audit-journal-")

from fkj.config import Settings  # noqa: E402
from fkj.store.engine import make_engine  # noqa: E402
from fkj.store.migrate import upgrade  # noqa: E402
from fkj.store.tenants import create_tenant  # noqa: E402

PG_URL = os.environ.get("FKJ_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
BASE_URL = "http://testserver"
_tenant_numbers = itertools.count(100)


def pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


class Database:
    """A freshly migrated database for one backend."""

    def __init__(self, backend: str, tmp_path_factory):
        self.backend = backend
        if backend == "sqlite":
            path = tmp_path_factory.mktemp("db") / "fkj.sqlite"
            self.url = f"sqlite:///{path}"
            self.schema = None
        else:
            self.schema = f"fkj_t_{uuid.uuid4().hex[:10]}"
            admin = make_engine(PG_URL, app_role=False)
            try:
                with admin.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            except Exception as e:  # noqa: BLE001
                pytest.fail(f"FKJ_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}",
                            pytrace=False)
            admin.dispose()
            self.url = pg_schema_url(self.schema)
        self.owner_engine = make_engine(self.url, app_role=False)
        upgrade(self.owner_engine)
        self.engine = make_engine(self.url)

    def new_tenant(self, name: str = "Testkommune") -> str:
        nr = f"{next(_tenant_numbers):04d}"
        create_tenant(self.engine, nr, name, official=False)
        return nr

    def drop(self) -> None:
        self.engine.dispose()
        self.owner_engine.dispose()
        if self.schema:
            admin = make_engine(PG_URL, app_role=False)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def db(request, tmp_path_factory):
    database = Database(request.param, tmp_path_factory)
    yield database
    database.drop()


@pytest.fixture(scope="session")
def fkj_app(db):
    from fkj.app import build_fkj
    from fkj.wiring import wire

    settings = Settings(database_url=db.url, base_url=BASE_URL, demo=True)
    fkj = build_fkj(settings, engine=db.engine)
    wire(fkj)
    yield fkj
    fkj.close()  # its background threads (event delivery, audit shipping) end before the
    # database is dropped


@pytest.fixture(scope="session")
def asgi_app(fkj_app):
    from fkj.app import create_app
    return create_app(fkj_app)


@pytest.fixture
def tenant(db) -> str:
    return db.new_tenant()


@pytest.fixture
def client(asgi_app, fkj_app, tenant):
    """An HTTP client for a fresh tenant, authorised as a system client of that tenant."""
    from starlette.testclient import TestClient

    c = TestClient(asgi_app, base_url=BASE_URL)
    c.headers.update(auth_headers(fkj_app, tenant))
    c.tenant = tenant  # type: ignore[attr-defined]
    c.base = f"/fhir/{tenant}"  # type: ignore[attr-defined]
    return c


def auth_headers(fkj, tenant: str, scope: str = "system/*.cruds", **claims) -> dict[str, str]:
    mint = getattr(fkj, "mint_token", None)
    if mint is None:
        return {}
    return {"Authorization": f"Bearer {mint(tenant=tenant, scope=scope, **claims)}"}


class LiveServer:
    """The real ASGI app served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app):
        import socket
        import threading

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.02)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=5)


@pytest.fixture(scope="session")
def live_server(asgi_app):
    server = LiveServer(asgi_app)
    yield server
    server.stop()
