"""Keeping the query planner informed after large loads.

PostgreSQL's autovacuum gathers planner statistics by itself. SQLite has no such daemon:
without ``sqlite_stat1`` its planner guesses, and it guesses wrong for the search queries
(it scans a type's every row instead of following the index of a parameter). ``fkj seed``
and ``fkj import`` therefore call :func:`refresh_statistics` when they finish, and
``fkj serve`` calls it when it starts.
"""

from __future__ import annotations

from sqlalchemy import Engine, text


def refresh_statistics(engine: Engine) -> None:
    """``ANALYZE`` on SQLite (a few hundred ms for 100,000 resources); nothing on
    PostgreSQL, where autovacuum does it."""
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
