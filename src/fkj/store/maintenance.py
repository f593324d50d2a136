"""Keeping the query planner informed after large loads.

PostgreSQL's autovacuum gathers planner statistics by itself, after the fact and only where
it is on: ``fkj import`` (:class:`GrowthAnalyzer`) and every ``fkj serve`` process
(:meth:`StatisticsWatcher.check_pg`) analyse ``resource`` once it has doubled since its last
analysis. SQLite has no such daemon:
without ``sqlite_stat1`` its planner guesses, and it guesses wrong for the search queries
(it scans a type's every row instead of following the index of a parameter). ``fkj seed``
and ``fkj import`` therefore call :func:`refresh_statistics` when they finish, and
``fkj serve`` calls it when it starts.

A SQLite connection reads ``sqlite_stat1`` once, when it opens: a server's pooled
connections keep planning with the statistics of their start (a tenant loaded into a running
server is planned as if it were empty: the ``_include`` search of ``fkj bench search`` took
p50 43 ms on the server that had loaded the data, 23 ms after a restart). Each server process
therefore runs a :class:`StatisticsWatcher`: it gathers statistics again when the store has
grown by a quarter since they were gathered, and renews the pool's connections whenever
``sqlite_stat1`` changed (whoever ran ``ANALYZE``: this process, another worker, ``fkj
import``, ``fkj seed``).
"""

from __future__ import annotations

import hashlib
import logging
import threading

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from fkj.store.backend import write_transaction

log = logging.getLogger(__name__)

#: rows ANALYZE samples per index in the watcher (approximate statistics in milliseconds;
#: ``refresh_statistics`` gathers exact ones)
ANALYSIS_LIMIT = 1000
#: seconds between the watcher's checks
WATCH_INTERVAL = 5.0


def refresh_statistics(engine: Engine) -> None:
    """``ANALYZE`` on SQLite (a few hundred ms for 100,000 resources); nothing on
    PostgreSQL, where autovacuum does it."""
    if engine.dialect.name != "sqlite":
        return
    with write_transaction(engine) as conn:
        conn.execute(text("ANALYZE"))


class OwnerAnalyze:
    """PostgreSQL ``ANALYZE`` through a connection of the login role (the tables' owner; the
    app role may not analyse them), opened when first needed and kept until :meth:`close`."""

    def __init__(self, engine: Engine):
        self.url = engine.url.render_as_string(hide_password=False)
        self._owner: Engine | None = None

    def run(self, tables: tuple[str, ...]) -> None:
        from fkj.store.engine import make_engine
        if self._owner is None:
            self._owner = make_engine(self.url, app_role=False, pool_size=1)
        with self._owner.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in tables:
                conn.exec_driver_sql(f'ANALYZE "{table}"')

    def close(self) -> None:
        if self._owner is not None:
            self._owner.dispose()
            self._owner = None


#: rows a load adds before its first ANALYZE (see GrowthAnalyzer)
LOAD_ANALYZE_MIN_ROWS = 5000


class GrowthAnalyzer:
    """PostgreSQL: ``ANALYZE`` of ``tables`` while a load makes them grow (``fkj import``).

    Autovacuum renews statistics after the fact (and not at all where it is off); a table
    filled from nothing within minutes is meanwhile planned with none. Without column
    statistics PostgreSQL takes ``tenant = … AND type = …`` for a few dozen rows, and looked a
    batch's 1,000 ids up by reading every stored resource of the type (a bitmap scan of
    ``(tenant, type)`` with the ids as a filter: 0.4 s per batch at 600,000 Observations,
    the lookup growing with the table) instead of 1,000 probes of the unique key.

    :meth:`added` counts the rows a load committed; once they reach the rows the table had
    at its last analysis (at least ``min_rows``), the table is analysed again — in a thread
    of its own, through a connection of the login role (the tables' owner; the app role may
    not), at most one at a time: about log2(rows) analyses, a few seconds for a million."""

    def __init__(self, engine: Engine, tables: tuple[str, ...], *, min_rows: int | None = None):
        self.engine = engine
        self.tables = tables
        self.min_rows = LOAD_ANALYZE_MIN_ROWS if min_rows is None else min_rows
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._owner = OwnerAnalyze(engine)
        #: how many analyses ran (for tests and logs)
        self.analyses = 0
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT coalesce(sum(greatest(reltuples, 0)), 0) FROM pg_class "
                "WHERE oid = ANY(CAST(%(t)s AS regclass[]))", {"t": list(tables)}).scalar()
        #: rows the tables had when last analysed (as far as this load knows) / added since
        self._mark = int(rows or 0)
        self._added = 0

    def added(self, n: int) -> None:
        with self._lock:
            self._added += n
            if self._added < max(self.min_rows, self._mark):
                return
            if self._thread is not None and self._thread.is_alive():
                return
            self._mark += self._added
            self._added = 0
            self._thread = threading.Thread(target=self._analyze, daemon=True,
                                            name="fkj-import-analyze")
            self._thread.start()

    def _analyze(self) -> None:
        try:
            self._owner.run(self.tables)
            self.analyses += 1
        except Exception:  # statistics are an optimisation; keep loading
            log.exception("ANALYZE during the load failed")

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=120)
        self._owner.close()


class StatisticsWatcher:
    """Keeps a running process's planner statistics current (see the module text);
    PostgreSQL: :meth:`check_pg`.

    Every ``interval`` seconds :meth:`check` compares a fingerprint of ``sqlite_stat1`` with
    the one its connections were opened under and, when it changed, disposes of the pool
    (connections in use are closed when they are returned; new ones read the new
    statistics). It runs ``ANALYZE`` itself when more resources were added since the
    statistics changed than ``grow - 1`` times the rows they describe (at least
    ``min_rows``); new rows are counted by the growth of ``max(rid)``."""

    def __init__(self, engine: Engine, *, interval: float = WATCH_INTERVAL, grow: float = 1.25,
                 min_rows: int = 1000):
        self.engine = engine
        self.interval = interval
        self.grow = grow
        self.min_rows = min_rows
        self._fingerprint: str | None = None
        #: max(rid) when the statistics last changed
        self._rid_mark = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: how many times the pool was renewed / ANALYZE was run (for tests and logs)
        self.renewals = 0
        self.analyses = 0
        #: PostgreSQL: runs the ANALYZE through the login role's connection
        self._analyzer: OwnerAnalyze | None = None

    def start(self) -> "StatisticsWatcher":
        if self._thread is not None:
            return self
        if self.engine.dialect.name == "sqlite":
            self._fingerprint, _, self._rid_mark = self._read()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="fkj-sqlite-statistics")
            self._thread.start()
        elif self.engine.dialect.name == "postgresql":
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="fkj-pg-statistics")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._analyzer is not None:
            self._analyzer.close()
            self._analyzer = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - statistics are an optimisation; keep serving
                log.exception("checking the planner statistics failed")

    def check(self) -> bool:
        """One round; True when the pool was renewed (SQLite) / the table analysed
        (PostgreSQL)."""
        if self.engine.dialect.name == "postgresql":
            return self.check_pg()
        fingerprint, analyzed_rows, max_rid = self._read()
        if max_rid - self._rid_mark >= max(self.min_rows, analyzed_rows * (self.grow - 1)):
            with write_transaction(self.engine) as conn:
                conn.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
                try:
                    conn.exec_driver_sql("ANALYZE")
                finally:
                    conn.exec_driver_sql("PRAGMA analysis_limit=0")
            self.analyses += 1
            self._rid_mark = max_rid
            fingerprint = self._read()[0]
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint, self._rid_mark = fingerprint, max_rid
        self.engine.pool.dispose()
        self.renewals += 1
        return True

    def check_pg(self) -> bool:
        """PostgreSQL: ``ANALYZE resource`` when more of its rows changed since its last
        analysis (by anyone: autovacuum, ``fkj import``, this) than it then had (at least
        ``min_rows``). Autovacuum analyses after a tenth; this is the fallback for where it is
        off or falls behind under a heavy load — without statistics every transaction Bundle
        looked its entries' stored versions up by reading all resources of the type (95 % of
        the database's time in a 1,000,000-resource HTTP load, which slowed from 1,700 to 250
        resources/s)."""
        with self.engine.connect() as conn:
            changed, rows = conn.exec_driver_sql(
                "SELECT coalesce(s.n_mod_since_analyze, 0), greatest(c.reltuples, 0) "
                "FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
                "WHERE c.oid = 'resource'::regclass").one()
        if changed < max(self.min_rows, rows):
            return False
        if self._analyzer is None:
            self._analyzer = OwnerAnalyze(self.engine)
        self._analyzer.run(("resource",))
        self.analyses += 1
        return True

    def _read(self) -> tuple[str | None, int, int]:
        """(fingerprint of sqlite_stat1, rows of ``resource`` it describes, max(rid))."""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT max(rid) FROM resource").scalar() or 0
            try:
                stats = conn.exec_driver_sql(
                    "SELECT tbl, idx, stat FROM sqlite_stat1 ORDER BY tbl, idx").all()
            except OperationalError:  # never analysed: no sqlite_stat1 table
                return None, 0, rows
        if not stats:
            return None, 0, rows
        digest = hashlib.sha256(repr(stats).encode()).hexdigest()
        analyzed = max((int(str(s).split()[0]) for t, _, s in stats
                        if t == "resource" and s), default=0)
        return digest, analyzed, rows
