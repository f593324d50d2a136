"""Database engines for the two backends.

SQLite runs in WAL mode with ``synchronous=FULL`` so a commit that returned is on disk.
PostgreSQL connections switch to the unprivileged ``fkj_app`` role, to which row-level
security applies (the owner that runs migrations bypasses it).
"""

from __future__ import annotations

import select
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

APP_ROLE = "fkj_app"
#: seconds a new PostgreSQL connection may take (``connect_timeout`` in the URL overrides it)
CONNECT_TIMEOUT = 10


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and use the psycopg 3 driver for it."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, app_role: bool = True, pool_size: int = 10,
                synchronous: str = "FULL") -> Engine:
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_size=pool_size, max_overflow=20,
                               connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # let SQLAlchemy not issue BEGIN itself; we issue BEGIN IMMEDIATE for writes
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            mode = conn.info.pop("begin_mode", "DEFERRED")
            # a transaction may ask for NORMAL (no fsync at its commit; see
            # fkj.store.backend.scope); the level can change only outside a transaction
            level = conn.info.pop("synchronous", synchronous)
            if conn.info.get("synchronous_now", synchronous) != level:
                conn.exec_driver_sql(f"PRAGMA synchronous={level}")
                conn.info["synchronous_now"] = level
            conn.exec_driver_sql(f"BEGIN {mode}")

        from fkj.store import idsets
        idsets.install(engine)  # the policy's care-relation sets, per connection
        return engine
    # LIFO: a checkout gets the connection returned last, whose server process has just
    # run (a read's audit append after the read: 460-650 instead of 750-800 µs; a process
    # idle for a few milliseconds answers its next round trip about twice as slowly). The
    # other pooled connections may then idle for long: pool_recycle renews them.
    # a database host that does not answer (a network cut, not a refusal) fails a request
    # after CONNECT_TIMEOUT seconds with 503, instead of holding it for the TCP timeout
    connect_args = {} if "connect_timeout" in u.query else {"connect_timeout": CONNECT_TIMEOUT}
    engine = create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=False,
                           pool_use_lifo=True, pool_recycle=1800, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _pg_session(dbapi_conn, _record):
        with dbapi_conn.cursor() as cur:
            # No JIT compilation: our statements are short, and any plan whose estimate
            # passes jit_above_cost (a batch INSERT … SELECT, a search over a large table)
            # was compiled by LLVM on every execution — 28 % of an import's database CPU,
            # ~20 ms per statement (docs/storage.md)
            cur.execute("SET jit = off")
            if app_role:
                cur.execute(f"SET ROLE {APP_ROLE}")
        dbapi_conn.commit()

    @event.listens_for(engine, "checkout")
    def _pg_alive(dbapi_conn, _record, _proxy):
        if closed_by_server(dbapi_conn):  # the pool replaces it (and checks the next)
            raise DisconnectionError("the database server closed this pooled connection")
    return engine


def closed_by_server(dbapi_conn) -> bool:
    """Whether the server has ended an idle pooled PostgreSQL connection — restarted,
    or the session terminated by an administrator or an idle timeout.

    An idle connection in the pool has nothing to read; one the server ended has its
    farewell message (FATAL 57P01) or end-of-file waiting on the socket. Looking costs one
    poll(2) without waiting (~1 µs) instead of pre-ping's round trip per checkout, and
    without it the first request on each such connection after a database restart failed.
    A connection whose peer vanished without closing (a network cut) still shows only on
    use."""
    if dbapi_conn.closed:
        return True
    try:
        fd = dbapi_conn.pgconn.socket
    except Exception:  # noqa: BLE001 - psycopg raises when the connection has no socket
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
