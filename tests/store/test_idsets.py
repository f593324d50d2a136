"""Id sets kept per SQLite connection (fkj.store.idsets): membership is right after the
set's rows were lost to a rollback, after the connection dropped it for newer sets, and a
set that cannot be loaded has no members (a mistake denies, never grants)."""

from __future__ import annotations

import pytest
from sqlalchemy import literal, select, text

from fkj.store import idsets
from fkj.store.engine import make_engine


@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path}/ids.sqlite", pool_size=1)
    yield e
    e.dispose()


def _is_member(conn, value: str, idset) -> bool:
    return conn.execute(select(idsets.member(literal(value), idset))).scalar_one() == 1


def _rows(conn, idset) -> int:
    return conn.execute(text("SELECT count(*) FROM temp.fkj_idset WHERE sid = :s"),
                        {"s": idset.sid}).scalar_one()


def test_membership_and_one_load_per_connection(engine):
    s = idsets.IdSet([f"p{i}" for i in range(200)])
    with engine.begin() as conn:
        assert _is_member(conn, "p17", s)
        assert not _is_member(conn, "p200", s)
        assert not _is_member(conn, "", s)
        assert _rows(conn, s) == 200
    with engine.begin() as conn:  # the same pooled connection: loaded already
        conn.exec_driver_sql("DELETE FROM temp.fkj_idset")  # (shows it is not loaded again)
        assert not _is_member(conn, "p17", s)


def test_a_rollback_loses_the_rows_and_the_next_use_loads_them_again(engine):
    s = idsets.IdSet(["a", "b", "c"])
    conn = engine.connect()
    tx = conn.begin()
    assert _is_member(conn, "b", s)
    tx.rollback()
    conn.close()
    with engine.begin() as conn:
        assert _is_member(conn, "b", s) and _rows(conn, s) == 3


def test_a_transaction_left_open_forgets_its_sets(engine):
    s = idsets.IdSet(["x", "y"])
    conn = engine.connect()
    conn.begin()
    assert _is_member(conn, "x", s)  # loaded inside a transaction that is never committed
    conn.close()  # … and rolled back when the connection goes back to the pool
    with engine.begin() as conn:
        assert _is_member(conn, "y", s) and _rows(conn, s) == 2


def test_sets_beyond_the_per_connection_limit_are_dropped_and_reloaded(engine):
    sets = [idsets.IdSet([f"s{n}-{i}" for i in range(3)]) for n in range(
        idsets.PER_CONNECTION + 5)]
    with engine.begin() as conn:
        for n, s in enumerate(sets):
            assert _is_member(conn, f"s{n}-1", s)
        assert _rows(conn, sets[0]) == 0  # the oldest were dropped
        assert conn.execute(text("SELECT count(DISTINCT sid) FROM temp.fkj_idset")
                            ).scalar_one() == idsets.PER_CONNECTION
        assert _is_member(conn, "s0-2", sets[0])  # and come back when used again


def test_a_set_that_is_gone_has_no_members(engine):
    s = idsets.IdSet(["z"])
    cond = idsets.member(literal("z"), s)
    del s  # nothing holds the set any more: its number names no set
    with engine.begin() as conn:
        assert conn.execute(select(cond)).scalar_one() == 0
