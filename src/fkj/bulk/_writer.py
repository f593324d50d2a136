"""Storing a batch of prepared import rows in the open transaction: the same rows a
:class:`~fkj.repository.unit_of_work.UnitOfWork` flush writes (resource, version, index rows,
event; index rows of updated resources replaced), from rows serialised by the workers.

PostgreSQL: one ``COPY`` of ready text per table into a session-local temporary table, then
one ``INSERT … SELECT`` (``COPY FROM`` is refused on tables with row-level security; the
``INSERT`` is checked by the policy as usual). SQLite: one ``executemany`` per table.
"""

from __future__ import annotations

from sqlalchemy import Connection

from fkj.repository.unit_of_work import (
    EVENT_COLUMNS,
    INDEX_COLUMNS,
    RESOURCE_COLUMNS,
    VERSION_COLUMNS,
)
from fkj.store import bulk
from fkj.store import resources as sql
from fkj.store.schema import INDEX_TABLES, event_log, resource, resource_version

from fkj.bulk._pipeline import RID, _esc


class Write:
    """One resource to store: ``cur`` is ``(row id, version)`` of the stored one, if any."""

    __slots__ = ("type", "id", "version", "ts", "content", "index", "rid", "action")

    def __init__(self, rtype: str, rid: str, ts: int, content, index, cur):
        self.type, self.id, self.ts, self.content, self.index = rtype, rid, ts, content, index
        if cur is None:
            self.version, self.rid, self.action = 1, None, "create"
        else:
            self.version, self.rid, self.action = cur[1] + 1, cur[0], "update"
            old = '"versionId":"1"'
            new = f'"versionId":"{self.version}"'
            if isinstance(content, bytes):
                self.content = content.replace(old.encode(), new.encode(), 1)
            else:
                self.content = content.replace(old, new, 1)


def write(conn: Connection, tenant: str, actor: str, ops: list[Write], cur_versions: dict,
          on_conflict, turn=None) -> None:
    """Store ``ops`` (updates first check the stored version: ``on_conflict(op)`` raises).

    ``turn()`` (if given) is called after the resource and index rows and before the
    tenant's event sequence is taken: the sequence, versions and events follow the
    transaction before (see :class:`fkj.bulk.importer._Pipeline`)."""
    if not ops:
        return
    pg = conn.dialect.name == "postgresql"
    for op in ops:
        if op.rid is not None:
            content = op.content
            if isinstance(content, bytes):  # COPY text → the JSON (only backslashes escaped)
                content = content.replace(b"\\\\", b"\\").decode()
            if not sql.update_current(conn, op.rid, cur_versions[(op.type, op.id)], {
                    "version": op.version, "last_updated": op.ts, "deleted": False,
                    "content": content}):
                on_conflict(op)
    new = [op for op in ops if op.rid is None]
    for op, rid in zip(new, bulk.allocate_rids(conn, len(new))):
        op.rid = rid
    turn = turn or (lambda: None)
    if pg:
        _write_pg(conn, tenant, actor, ops, new, turn)
    else:
        _write_sqlite(conn, tenant, actor, ops, new, turn)


def _write_sqlite(conn, t: str, actor: str, ops: list[Write], new: list[Write],
                  turn) -> None:
    bulk.insert_rows(conn, resource, RESOURCE_COLUMNS, [
        (op.rid, t, op.type, op.id, op.version, op.ts, False, op.content) for op in new])
    turn()
    first = sql.allocate_seq(conn, t, len(ops))
    actor = actor[:200]
    versions, events = [], []
    index: dict[str, list[tuple]] = {}
    for n, op in enumerate(ops):
        seq = first + n
        versions.append((t, op.type, op.id, op.version, seq, op.ts, "PUT", False, op.content))
        events.append((t, seq, op.type, op.id, op.version, op.action, op.ts, actor))
        head = (t, op.rid, op.type)
        for table, rows in op.index.items():
            lst = index.get(table)
            if lst is None:
                lst = index[table] = []
            lst += [head + row for row in rows]
    bulk.insert_rows(conn, resource_version, VERSION_COLUMNS, versions)
    clear = [op.rid for op in ops if op.action != "create"]
    sql.replace_index(conn, t, clear, {})
    for name, rows in index.items():
        bulk.insert_rows(conn, INDEX_TABLES[name], INDEX_COLUMNS[name], rows)
    bulk.insert_rows(conn, event_log, EVENT_COLUMNS, events)


def _write_pg(conn, t: str, actor: str, ops: list[Write], new: list[Write], turn) -> None:
    # the temporary tables empty at commit (ON COMMIT DELETE ROWS); a second write in the
    # same transaction empties them first
    tx = conn.get_transaction()
    if conn.info.get("fkj_import_tx") is tx:
        for name in (resource.name, resource_version.name, event_log.name,
                     *(x.name for x in INDEX_TABLES.values())):
            conn.exec_driver_sql(f'CREATE TEMP TABLE IF NOT EXISTS "fkj_import_{name}" '
                                 f'(LIKE "{name}") ON COMMIT DELETE ROWS')
            conn.exec_driver_sql(f'DELETE FROM "fkj_import_{name}"')
    if conn.info.get("fkj_import_tx") is not tx:
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")  # the sorts of _lookup_order
    conn.info["fkj_import_tx"] = tx
    tb = _esc(t).encode()
    if new:
        _copy(conn, resource.name, RESOURCE_COLUMNS, b"".join([
            b"%d\t%s\t%s\t%s\t%d\t%d\tf\t%s\n" % (op.rid, tb, _esc(op.type).encode(),
                                                 _esc(op.id).encode(), op.version, op.ts,
                                                 op.content) for op in new]))
    # the index rows (the bulk of the work) before the sequence: they need no turn
    sql.replace_index(conn, t, [op.rid for op in ops if op.action != "create"], {})
    index: dict[str, list[bytes]] = {}
    for op in ops:
        rid = b"%d" % op.rid
        for table, data in op.index.items():
            lst = index.get(table)
            if lst is None:
                lst = index[table] = []
            lst.append(data.replace(RID, rid))
    for name, parts in index.items():
        _copy(conn, INDEX_TABLES[name].name, INDEX_COLUMNS[name], b"".join(parts))
    turn()
    first = sql.allocate_seq(conn, t, len(ops))
    actor_b = _esc(actor[:200]).encode()
    versions, events = [], []
    for n, op in enumerate(ops):
        seq = first + n
        ty, i = _esc(op.type).encode(), _esc(op.id).encode()
        versions.append(b"%s\t%s\t%s\t%d\t%d\t%d\tPUT\tf\t%s\n" % (
            tb, ty, i, op.version, seq, op.ts, op.content))
        events.append(b"%s\t%d\t%s\t%s\t%d\t%s\t%d\t%s\n" % (
            tb, seq, ty, i, op.version, op.action.encode(), op.ts, actor_b))
    _copy(conn, resource_version.name, VERSION_COLUMNS, b"".join(versions))
    _copy(conn, event_log.name, EVENT_COLUMNS, b"".join(events))


def _lookup_order(table: str) -> str:
    """``ORDER BY`` of an index table's rows in the order of its lookup index: a batch's
    rows then go into that (large, randomly keyed) B-tree page after page instead of one
    random leaf per row — fewer pages dirtied, read back and written in full after a
    checkpoint. The (rid, param) index grows at its right edge either way."""
    t = INDEX_TABLES.get(table[4:]) if table.startswith("idx_") else None
    if t is None:
        return ""
    idx = next((i for i in t.indexes if i.name == f"ix_{table}_lookup"), None)
    if idx is None:
        return ""
    return " ORDER BY " + ", ".join(f'"{c.name}"' for c in idx.columns)


def _copy(conn: Connection, table: str, columns, data: bytes) -> None:
    cols = ", ".join(f'"{c}"' for c in columns)
    tmp = f"fkj_import_{table}"
    conn.exec_driver_sql(
        f'CREATE TEMP TABLE IF NOT EXISTS "{tmp}" (LIKE "{table}") ON COMMIT DELETE ROWS')
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f'COPY "{tmp}" ({cols}) FROM STDIN') as copy:
        copy.write(data)
    conn.exec_driver_sql(
        f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM "{tmp}"{_lookup_order(table)}')
