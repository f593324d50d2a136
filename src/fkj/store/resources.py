"""SQL for resources, their versions and the event log. Every function takes the
connection of a :func:`fkj.store.backend.scope` and the tenant it is scoped to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, bindparam, delete, insert, select, text, update

from fkj.store.backend import built_for
from fkj.store.schema import (
    INDEX_TABLES,
    event_log,
    resource,
    resource_version,
    tenant as tenant_table,
)


@dataclass
class Current:
    rid: int
    version: int
    deleted: bool
    last_updated: int
    content: str


#: built once: the hot read path should not rebuild SQL expressions per call
_CURRENT = select(resource.c.rid, resource.c.version, resource.c.deleted,
                  resource.c.last_updated, resource.c.content).where(
    resource.c.tenant == bindparam("tenant"), resource.c.type == bindparam("type"),
    resource.c.id == bindparam("id"))
_CURRENT_FOR_UPDATE = _CURRENT.with_for_update()


def get_current(conn: Connection, tenant: str, rtype: str, rid_id: str, *,
                for_update: bool = False) -> Current | None:
    q = _CURRENT_FOR_UPDATE if for_update and conn.dialect.name == "postgresql" else _CURRENT
    row = conn.execute(q, {"tenant": tenant, "type": rtype, "id": rid_id}).first()
    return Current(*row) if row else None


def get_current_with(conn: Connection, tenant: str, rtype: str, rid_id: str, scalar
                     ) -> tuple[Current | None, object]:
    """:func:`get_current` and, in the same statement, the value of ``scalar`` (a scalar
    sub-select that may use the bind parameter ``tenant``): one round trip for what the
    read and a layer above it (the access policy's epoch) both need."""
    stmt = built_for("current", scalar, lambda sc: _CURRENT.add_columns(sc.label("companion")))
    row = conn.execute(stmt, {"tenant": tenant, "type": rtype, "id": rid_id}).first()
    if row is None:
        return None, None
    return Current(*row[:5]), row[5]


def get_many_current(conn: Connection, tenant: str, keys: Iterable[tuple[str, str]], *,
                     for_update: bool = False) -> dict[tuple[str, str], Current]:
    """Current rows of many (type, id) pairs in one query per type."""
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    out: dict[tuple[str, str], Current] = {}
    for t, ids in by_type.items():
        for start in range(0, len(ids), 500):
            q = select(resource.c.id, resource.c.rid, resource.c.version, resource.c.deleted,
                       resource.c.last_updated, resource.c.content).where(
                resource.c.tenant == tenant, resource.c.type == t,
                resource.c.id.in_(ids[start:start + 500]))
            if for_update and conn.dialect.name == "postgresql":
                q = q.with_for_update()
            for row in conn.execute(q):
                out[(t, row.id)] = Current(row.rid, row.version, row.deleted, row.last_updated,
                                           row.content)
    return out


def get_version(conn: Connection, tenant: str, rtype: str, rid_id: str, version: int):
    return conn.execute(
        select(resource_version.c.deleted, resource_version.c.last_updated,
               resource_version.c.content, resource_version.c.method).where(
            resource_version.c.tenant == tenant, resource_version.c.type == rtype,
            resource_version.c.id == rid_id, resource_version.c.version == version)).first()


def existing_ids(conn: Connection, tenant: str, keys: Iterable[tuple[str, str]], *,
                 include_deleted: bool = False) -> set[tuple[str, str]]:
    """Which of the (type, id) pairs exist in the tenant (deleted ones only if asked)."""
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    found: set[tuple[str, str]] = set()
    for t, ids in by_type.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            q = select(resource.c.id).where(
                resource.c.tenant == tenant, resource.c.type == t, resource.c.id.in_(chunk))
            if not include_deleted:
                q = q.where(resource.c.deleted.is_(False))
            rows = conn.execute(q)
            found.update((t, r.id) for r in rows)
    return found


def insert_new(conn: Connection, rows: Sequence[dict]) -> list[int]:
    """Insert new resource rows; returns their rids in order."""
    if not rows:
        return []
    if len(rows) == 1:
        return [conn.execute(insert(resource).returning(resource.c.rid), rows[0]).scalar_one()]
    result = conn.execute(insert(resource).returning(resource.c.rid, sort_by_parameter_order=True),
                          list(rows))
    return [r[0] for r in result]


def update_current(conn: Connection, rid: int, expected_version: int, values: dict) -> bool:
    """Optimistic update: True if the row was still at ``expected_version``."""
    res = conn.execute(update(resource).where(resource.c.rid == rid,
                                              resource.c.version == expected_version)
                       .values(**values))
    return res.rowcount == 1


def allocate_seq(conn: Connection, tenant: str, n: int) -> int:
    """Reserve ``n`` event sequence numbers; returns the first. Holds the tenant row lock
    until commit, which keeps the sequence gap-free."""
    last = conn.execute(update(tenant_table).where(tenant_table.c.id == tenant)
                        .values(event_seq=tenant_table.c.event_seq + n)
                        .returning(tenant_table.c.event_seq)).scalar_one()
    return last - n + 1


def insert_versions(conn: Connection, rows: list[dict]) -> None:
    if rows:
        conn.execute(insert(resource_version), rows)


def insert_events(conn: Connection, rows: list[dict]) -> None:
    if rows:
        conn.execute(insert(event_log), rows)


def replace_index(conn: Connection, tenant: str, rids_to_clear: list[int],
                  rows_by_table: dict[str, list[dict]]) -> None:
    if rids_to_clear:
        for table in INDEX_TABLES.values():
            conn.execute(delete(table).where(table.c.rid.in_(rids_to_clear)))
    for name, rows in rows_by_table.items():
        if rows:
            conn.execute(insert(INDEX_TABLES[name]), rows)


def history_rows(conn: Connection, tenant: str, rtype: str | None, rid_id: str | None, *,
                 since: int | None, before_seq: int | None, limit: int):
    c = resource_version.c
    q = select(c.type, c.id, c.version, c.seq, c.last_updated, c.method, c.deleted, c.content)
    conds = [c.tenant == tenant]
    if rtype:
        conds.append(c.type == rtype)
    if rid_id:
        conds.append(c.id == rid_id)
    if since is not None:
        conds.append(c.last_updated >= since)
    if before_seq is not None:
        conds.append(c.seq < before_seq)
    return conn.execute(q.where(and_(*conds)).order_by(c.seq.desc()).limit(limit)).all()


def count_history(conn: Connection, tenant: str, rtype: str | None, rid_id: str | None,
                  since: int | None) -> int:
    from sqlalchemy import func
    c = resource_version.c
    conds = [c.tenant == tenant]
    if rtype:
        conds.append(c.type == rtype)
    if rid_id:
        conds.append(c.id == rid_id)
    if since is not None:
        conds.append(c.last_updated >= since)
    return conn.execute(select(func.count()).select_from(resource_version).where(and_(*conds))).scalar_one()


__all__ = ["Current", "get_current", "get_version", "existing_ids", "insert_new", "update_current",
           "allocate_seq", "insert_versions", "insert_events", "replace_index", "history_rows",
           "count_history", "text"]
