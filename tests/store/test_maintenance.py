"""The SQLite statistics watcher of a running server (fkj.store.maintenance)."""

from __future__ import annotations

from sqlalchemy import insert, text

from fkj.store.engine import make_engine
from fkj.store.maintenance import StatisticsWatcher, refresh_statistics
from fkj.store.migrate import upgrade
from fkj.store.schema import resource


def _engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'stats.sqlite'}")
    upgrade(make_engine(f"sqlite:///{tmp_path / 'stats.sqlite'}", app_role=False))
    return engine


def _add(engine, start: int, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(resource), [
            {"tenant": "0001", "type": "Patient", "id": f"p{i}", "version": 1,
             "last_updated": i, "deleted": False, "content": "{}"}
            for i in range(start, start + n)])


def _connection(engine):
    """The DB-API connection the pool hands out (kept alive by the caller, so that a new
    one cannot take its place in memory)."""
    with engine.connect() as conn:
        return conn.connection.driver_connection


def _stat_rows(engine) -> int:
    with engine.connect() as conn:
        stat = conn.execute(text("SELECT stat FROM sqlite_stat1 WHERE tbl = 'resource' "
                                 "ORDER BY idx LIMIT 1")).scalar()
    return int(stat.split()[0])


def test_growth_is_analysed_and_the_pool_renewed(tmp_path):
    engine = _engine(tmp_path)
    watcher = StatisticsWatcher(engine, min_rows=100)
    watcher._fingerprint, _, watcher._rid_mark = watcher._read()
    assert watcher.check() is False  # empty store: nothing to gather
    before = _connection(engine)
    _add(engine, 0, 500)
    assert watcher.check() is True
    assert (watcher.analyses, watcher.renewals) == (1, 1)
    assert _stat_rows(engine) == 500
    assert _connection(engine) is not before  # connections opened before the statistics are gone
    # no growth, no change: no further ANALYZE, the pool stays
    same = _connection(engine)
    assert watcher.check() is False and watcher.analyses == 1
    assert _connection(engine) is same
    # a little growth (under a quarter) does not trigger ANALYZE
    _add(engine, 500, 50)
    assert watcher.check() is False and watcher.analyses == 1


def test_statistics_gathered_elsewhere_renew_the_pool(tmp_path):
    engine = _engine(tmp_path)
    _add(engine, 0, 300)
    watcher = StatisticsWatcher(engine, min_rows=10_000)  # never analyses by itself
    watcher._fingerprint, _, watcher._rid_mark = watcher._read()
    before = _connection(engine)
    other = make_engine(f"sqlite:///{tmp_path / 'stats.sqlite'}")  # e.g. `fkj import`
    refresh_statistics(other)
    assert watcher.check() is True and watcher.analyses == 0
    assert _connection(engine) is not before
    assert _stat_rows(engine) == 300


def test_a_growing_table_is_analysed_each_time_it_doubled(db):
    """PostgreSQL: GrowthAnalyzer runs ANALYZE once the rows added reach the rows the table
    had at its last analysis (at least min_rows), not before, and not again until they
    doubled once more."""
    import pytest

    from fkj.store.maintenance import GrowthAnalyzer
    if db.backend != "postgresql":
        pytest.skip("ANALYZE during a load is for PostgreSQL (SQLite: StatisticsWatcher)")
    ga = GrowthAnalyzer(db.engine, ("resource",), min_rows=10)

    def add(n: int) -> int:
        ga.added(n)
        ga.close()  # waits for an analysis it started
        return ga.analyses
    first = max(10, ga._mark)
    assert add(first - 1) == 0
    assert add(1) == 1
    rows = ga._mark  # the rows at that analysis: the next one when as many more came
    assert rows >= first
    assert add(rows - 1) == 1
    assert add(1) == 2


def test_a_server_on_postgresql_analyses_resource_once_it_has_doubled(db):
    """PostgreSQL: the watcher of ``fkj serve`` runs ANALYZE when more rows of ``resource``
    changed since its last analysis than it then had (where autovacuum is off or behind)."""
    import time

    import pytest

    if db.backend != "postgresql":
        pytest.skip("the SQLite side is tested above")
    owner = make_engine(db.url, app_role=False)

    def changed() -> tuple[int, int]:
        with owner.connect() as conn:
            return tuple(conn.exec_driver_sql(
                "SELECT coalesce(s.n_mod_since_analyze, 0), greatest(c.reltuples, 0)::bigint "
                "FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
                "WHERE c.oid = 'resource'::regclass").one())

    def until(cond, what: str):
        deadline = time.time() + 10  # the statistics counters are published asynchronously
        while not cond():
            assert time.time() < deadline, what
            time.sleep(0.2)

    try:
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE resource")
        until(lambda: changed()[0] == 0, "ANALYZE did not reset the counter")
        watcher = StatisticsWatcher(db.engine, min_rows=10)
        assert watcher.check() is False and watcher.analyses == 0
        tenant = db.new_tenant()
        rows = changed()[1]
        with owner.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO resource (tenant, type, id, version, last_updated, deleted, content) "
                "SELECT %(t)s, 'Basic', 'b' || g, 1, g, false, '{}' "
                "FROM generate_series(1, %(n)s) g", {"t": tenant, "n": max(rows, 10) + 1})
        until(lambda: changed()[0] > rows, "the inserts were not counted")
        assert watcher.check() is True and watcher.analyses == 1
        until(lambda: changed()[0] == 0, "the watcher's ANALYZE did not reset the counter")
        assert watcher.check() is False and watcher.analyses == 1
        watcher.stop()
    finally:
        owner.dispose()
