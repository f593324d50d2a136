"""Bulk row writes with the least per-row overhead each backend allows.

SQLite: one DBAPI ``executemany`` with positional parameters. PostgreSQL: ``COPY`` into a
session-local temporary table, then one ``INSERT … SELECT`` into the real table (PostgreSQL
refuses ``COPY FROM`` straight into a table with row-level security; the ``INSERT`` is checked
by the policy as usual). Both bypass SQLAlchemy's per-row parameter processing, which
otherwise costs more than the database itself for index rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table, text


#: below this many rows, a pipelined executemany beats the temporary table's extra statements
COPY_THRESHOLD = 200


def insert_rows(conn: Connection, table: Table, columns: Sequence[str],
                rows: Sequence[Sequence]) -> None:
    if not rows:
        return
    cols = ", ".join(f'"{c}"' for c in columns)
    pg = conn.dialect.name == "postgresql"
    if pg and len(rows) >= COPY_THRESHOLD:
        _copy_via_temp(conn, table, cols, rows)
        return
    marks = ", ".join("%s" if pg else "?" for _ in columns)
    conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({cols}) VALUES ({marks})', list(rows))


def allocate_rids(conn: Connection, n: int) -> list[int]:
    """Reserve ``n`` new resource row ids (the caller holds the write lock on SQLite)."""
    if n == 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = conn.execute(text(
            "SELECT nextval(pg_get_serial_sequence('resource', 'rid')) "
            "FROM generate_series(1, :n)"), {"n": n}).all()
        return [r[0] for r in rows]
    start = conn.execute(text("SELECT coalesce(max(rid), 0) FROM resource")).scalar_one() + 1
    return list(range(start, start + n))


def _copy_via_temp(conn: Connection, table: Table, cols: str, rows: Sequence[Sequence]) -> None:
    tmp = f"fkj_tmp_{table.name}"
    conn.exec_driver_sql(
        f'CREATE TEMP TABLE IF NOT EXISTS "{tmp}" (LIKE "{table.name}") ON COMMIT DELETE ROWS')
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f'COPY "{tmp}" ({cols}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)
    conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM "{tmp}"')
    conn.exec_driver_sql(f'DELETE FROM "{tmp}"')
