"""Session settings of the engines (fkj.store.engine)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from fkj.store.engine import make_engine


def test_postgresql_connections_run_without_jit(db):
    """A plan above jit_above_cost was compiled by LLVM on every execution (28 % of an
    import's database CPU): every connection, of the app role and of the owner, has it off,
    also for a statement whose estimate is far above the threshold."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL setting")
    for app_role in (True, False):
        engine = make_engine(db.url, app_role=app_role)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SHOW jit")).scalar() == "off"
                plan = conn.execute(text(
                    "EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(a.x * b.x) FROM "
                    "generate_series(1, 2000) a(x) CROSS JOIN generate_series(1, 2000) b(x)"
                )).scalar()
                assert plan[0]["Plan"]["Total Cost"] > 100_000  # above jit_above_cost
                assert "JIT" not in plan[0]
        finally:
            engine.dispose()


def test_a_transaction_without_flush_and_the_next_one_with(db):
    """``scope(flush=False)`` commits without waiting for the disk (an import batch); the
    pooled connection's next transaction flushes again."""
    from fkj.store.backend import scope

    engine = make_engine(db.url, pool_size=1)
    sqlite = engine.dialect.name == "sqlite"
    show = text("PRAGMA synchronous") if sqlite else text("SHOW synchronous_commit")
    # SQLite: 1 = NORMAL (no fsync at commit in WAL mode), 2 = FULL
    off, on = (1, 2) if sqlite else ("off", "on")
    try:
        for _ in range(2):
            with scope(engine, "0000", write=True, flush=False) as conn:
                assert conn.execute(show).scalar() == off
            with scope(engine, "0000", write=True) as conn:
                assert conn.execute(show).scalar() == on
    finally:
        engine.dispose()


def test_a_transaction_reads_its_companion_value_as_its_own_tenant(db):
    """``scope(companion=…)`` (a search learning the policy epoch when its transaction
    opens): the value is read under row-level security as the transaction's tenant — also
    on a pooled connection whose session still names another tenant (a point read's) — and
    it is the committed value of that tenant, not of another."""
    from fkj.security.policy.cache import bump, epoch_companion
    from fkj.store.backend import scope

    a, b = db.new_tenant(), db.new_tenant()
    engine = make_engine(db.url, pool_size=1)
    try:
        for tenant, times in ((a, 3), (b, 1)):
            for _ in range(times):
                with scope(engine, tenant, write=True) as conn:
                    bump(conn, tenant)
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:  # the session setting of a point read
                conn.execute(text("SELECT set_config('fkj.tenant', :t, false)"), {"t": b})
                conn.commit()
        scalar, _ = epoch_companion()
        for tenant, expected in ((a, 3), (b, 1), (a, 3)):
            got: list = []
            with scope(engine, tenant, companion=(scalar, got.append)) as conn:
                assert got == [expected]
                if engine.dialect.name == "postgresql":
                    assert conn.execute(text("SELECT current_setting('fkj.tenant')")
                                        ).scalar() == tenant
    finally:
        engine.dispose()


def test_postgresql_pool_hands_out_the_connection_returned_last(db):
    """The PostgreSQL pool is LIFO: with two idle connections, the next checkout gets the
    one returned last (its server process has just run), not the one idle the longest."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL pool setting")
    engine = make_engine(db.url, pool_size=2)
    pid = text("SELECT pg_backend_pid()")
    try:
        with engine.connect() as first, engine.connect() as second:
            older, newer = first.execute(pid).scalar(), second.execute(pid).scalar()
            first.close()  # returned first; `second` is returned last (end of the block)
        assert older != newer
        for _ in range(3):
            with engine.connect() as conn:
                assert conn.execute(pid).scalar() == newer
    finally:
        engine.dispose()
