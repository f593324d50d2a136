"""fkj.store.cancel.statement_guard on a real database: the timeout stops a statement (400
too-costly), a cancellation stops it (ClientGone) and the PostgreSQL connection it was sent
on is not pooled again, the timeout is put back for a write transaction, and a guard that
ends normally leaves the connection as it found it."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest
from sqlalchemy import text

from fkj.errors import InvalidSearch
from fkj.store import cancel
from fkj.store.backend import scope

SLOW = {  # a statement that runs for about half a minute
    "postgresql": "SELECT pg_sleep(30)",
    "sqlite": "WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n "
              "WHERE g < 300000000) SELECT count(*) FROM n",
}


def test_the_timeout_stops_a_statement(db, tenant):
    started = time.monotonic()
    with pytest.raises(InvalidSearch) as e, scope(db.engine, tenant) as conn, \
            cancel.statement_guard(conn, 0.3, expression=["name"]):
        conn.execute(text(SLOW[db.backend]))
    assert time.monotonic() - started < 10
    issue = e.value.issues[0]
    assert (e.value.status, issue.code, issue.expression) == (400, "too-costly", ["name"])
    with scope(db.engine, tenant) as conn:  # the pool's connections work on
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_a_cancellation_stops_a_statement(db, tenant):
    cancellation = cancel.Cancellation()
    outcome: dict = {}

    def search():
        cancel._current.set(cancellation)
        try:
            with scope(db.engine, tenant) as conn, cancel.statement_guard(conn, 300):
                conn.execute(text(SLOW[db.backend]))
        except Exception as e:  # noqa: BLE001 - the test looks at it
            outcome["error"] = e

    worker = threading.Thread(target=contextvars.copy_context().run, args=(search,))
    worker.start()
    time.sleep(0.5)
    assert worker.is_alive()
    started = time.monotonic()
    cancellation.cancel()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - started < 5
    assert isinstance(outcome.get("error"), cancel.ClientGone), outcome
    assert cancellation.cancelled
    with scope(db.engine, tenant) as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    if db.backend == "postgresql":
        # the connection a cancel went to was closed, not pooled: no session of the app
        # role is still sleeping
        from fkj.store.engine import make_engine
        from tests.conftest import PG_URL
        admin = make_engine(PG_URL, app_role=False)
        with admin.connect() as conn:
            assert conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' "
                "AND state = 'active'")).scalar() == 0
        admin.dispose()


def test_a_cancellation_before_the_statement_stops_it_too(db, tenant):
    cancellation = cancel.Cancellation()
    cancellation.cancel()
    token = cancel._current.set(cancellation)
    try:
        with pytest.raises(cancel.ClientGone), scope(db.engine, tenant) as conn, \
                cancel.statement_guard(conn, 300):
            conn.execute(text(SLOW[db.backend]))
    finally:
        cancel._current.reset(token)


def test_the_timeout_is_put_back_for_the_writes_after_it(db, tenant):
    if db.backend != "postgresql":
        pytest.skip("SQLite's progress handler is removed with the guard (tested below)")
    with scope(db.engine, tenant, write=True) as conn:
        before = conn.execute(text("SELECT current_setting('statement_timeout')")).scalar()
        with cancel.statement_guard(conn, 2, restore=True,
                                    settings={"plan_cache_mode": "force_custom_plan"}):
            assert conn.execute(text("SELECT current_setting('statement_timeout')")) \
                .scalar() == "2s"
            assert conn.execute(text("SELECT current_setting('plan_cache_mode')")) \
                .scalar() == "force_custom_plan"
        assert conn.execute(text("SELECT current_setting('statement_timeout')")) \
            .scalar() == before


def test_a_guard_that_ends_leaves_no_progress_handler(db, tenant):
    if db.backend != "sqlite":
        pytest.skip("SQLite only")
    with scope(db.engine, tenant) as conn:
        with cancel.statement_guard(conn, 0.2):
            conn.execute(text("SELECT 1"))
        time.sleep(0.3)  # past the guard's deadline: nothing may stop this one
        assert conn.execute(text(SLOW["sqlite"].replace("300000000", "300000"))) \
            .scalar() == 300000
