"""Transactions scoped to a tenant, the same way on both backends.

``scope(engine, tenant, write=...)`` opens a transaction in which every statement is bound
to one tenant: on PostgreSQL the transaction-local setting ``fkj.tenant`` drives row-level
security; on SQLite the repository's own filters do it (SQLite has no RLS). Write
transactions on SQLite begin IMMEDIATE so concurrent writers queue instead of deadlocking.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, bindparam, func, select, text

ALL_TENANTS = "*"


def now_us() -> int:
    """Current time in microseconds since the epoch (the store's time unit)."""
    return time.time_ns() // 1000


_SET_TENANT = text("SELECT set_config('fkj.tenant', :t, true)")
_SET_SESSION_TENANT = text("SELECT set_config('fkj.tenant', :t, false)")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for a transaction that writes (no tenant scope: tenants, keys,
    tokens, clients). On SQLite it begins IMMEDIATE: a DEFERRED transaction that reads and
    then writes fails at once with "database is locked" when another connection committed
    in between (its snapshot is stale; the busy timeout does not apply)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.info["begin_mode"] = "IMMEDIATE"
        with conn.begin():
            yield conn


@contextmanager
def point_read(engine: Engine, tenant: str) -> Iterator[Connection]:
    """A connection for single-statement reads (read, vread) without a transaction.

    On PostgreSQL the connection runs in autocommit mode and keeps the tenant as a session
    setting, set only when it changes: a point read is then one round trip instead of four
    (BEGIN, set_config, SELECT, COMMIT). Row-level security applies exactly as in a
    transaction, because the setting always names the tenant of the current request.
    """
    if engine.dialect.name == "sqlite":
        with scope(engine, tenant) as conn:
            yield conn
        return
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        if conn.info.get("fkj_session_tenant") != tenant:
            conn.execute(_SET_SESSION_TENANT, {"t": tenant})
            conn.info["fkj_session_tenant"] = tenant
        yield conn


@contextmanager
def scope(engine: Engine, tenant: str, *, write: bool = False, flush: bool = True,
          companion=None) -> Iterator[Connection]:
    """A transaction of ``tenant`` (row-level security on PostgreSQL).

    ``companion``: (scalar sub-select that may use the bind parameter ``tenant``,
    callback(value)) — its value is fetched when the transaction opens, on PostgreSQL in
    the statement that sets the tenant (no extra round trip), and handed to the callback
    (the access policy's epoch for a search, see :mod:`fkj.security.policy.cache`).

    ``flush=False``: its commit does not wait for the disk (PostgreSQL
    ``synchronous_commit = off``, SQLite ``synchronous = NORMAL`` in WAL mode). It is
    committed and survives a crash of the process, but an operating-system crash or power
    loss may undo it — for work that is redone when lost (an import batch, whose progress
    row commits with it). The next flushing commit makes every earlier one durable."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.info["begin_mode"] = "IMMEDIATE" if write else "DEFERRED"
            if not flush:
                conn.info["synchronous"] = "NORMAL"
        with conn.begin():
            if not sqlite:
                if companion is None:
                    conn.execute(_SET_TENANT, {"t": tenant})
                else:
                    companion[1](conn.execute(_with_tenant(companion[0]),
                                              {"t": tenant, "tenant": tenant}).scalar_one())
                if not flush:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            elif companion is not None:
                companion[1](_sqlite_scalar(conn, companion[0], tenant))
            yield conn


_BUILT: dict[tuple[str, int], tuple] = {}


def built_for(kind: str, scalar, build):
    """The statement ``build(scalar)`` for a companion scalar (see :func:`scope`), built once
    per scalar object and kind of statement (compiling it again per request costs more than
    the query)."""
    held = _BUILT.get((kind, id(scalar)))
    if held is None or held[0] is not scalar:
        held = _BUILT[(kind, id(scalar))] = (scalar, build(scalar))
    return held[1]


def _sqlite_scalar(conn: Connection, scalar, tenant: str):
    """SQLite: the companion's value, through the driver (no round trip to save there, but
    SQLAlchemy's execution of a statement built per request cost a search 150 µs)."""
    def build(sc):
        compiled = select(sc).compile(dialect=conn.dialect)
        return compiled.string, tuple(compiled.positiontup or ())
    sql, names = built_for("sqlite", scalar, build)
    cur = conn.connection.dbapi_connection.cursor()
    try:
        row = cur.execute(sql, tuple({"tenant": tenant}[n] for n in names)).fetchone()
    finally:
        cur.close()
    return row[0] if row else None


def _with_tenant(scalar):
    """``SELECT <scalar> FROM (SELECT set_config('fkj.tenant', :t, true))``: the setting is
    made before the sub-select reads (row-level security sees the tenant)."""
    def build(sc):
        setting = select(func.set_config("fkj.tenant", bindparam("t"), True).label("s")) \
            .subquery("tenant_setting")
        return select(sc).select_from(setting)
    return built_for("scope", scalar, build)


def is_unique_violation(exc: BaseException) -> bool:
    msg = str(getattr(exc, "orig", exc)).lower()
    return "unique" in msg or "duplicate key" in msg
