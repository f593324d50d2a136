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

from sqlalchemy import Connection, Engine, text

ALL_TENANTS = "*"


def now_us() -> int:
    """Current time in microseconds since the epoch (the store's time unit)."""
    return time.time_ns() // 1000


@contextmanager
def scope(engine: Engine, tenant: str, *, write: bool = False) -> Iterator[Connection]:
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.info["begin_mode"] = "IMMEDIATE" if write else "DEFERRED"
        with conn.begin():
            if not sqlite:
                conn.execute(text("SELECT set_config('fkj.tenant', :t, true)"), {"t": tenant})
            yield conn


def is_unique_violation(exc: BaseException) -> bool:
    msg = str(getattr(exc, "orig", exc)).lower()
    return "unique" in msg or "duplicate key" in msg
