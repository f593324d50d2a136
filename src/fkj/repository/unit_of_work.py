"""One database transaction's worth of writes, flushed in batches.

Creates are buffered and inserted together (one multi-row INSERT per table), which is what
lets a 1,000-entry transaction Bundle commit in a handful of statements. Updates and deletes
check their version immediately (optimistic locking) and buffer the rest. Any read inside the
transaction flushes first, so reads always see the transaction's own writes.

References are checked once, at the end of the transaction (:meth:`UnitOfWork.finish`).
Event sequence numbers are allocated at flush in operation order; the tenant row lock they
take is held to commit, which keeps the per-tenant sequence gap-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection

from fkj.errors import Unprocessable
from fkj.search.keys import INDEX_COLUMNS, stored_rows  # the rows as written (bounded keys)
from fkj.search.keys import VALUE_COLUMNS as _VALUE_COLUMNS
from fkj.store import bulk
from fkj.store import resources as sql
from fkj.store.schema import INDEX_TABLES, event_log, resource, resource_version


@dataclass
class Prepared:
    """A write ready to store: validated, with server fields set and index rows extracted."""

    type: str
    id: str
    version: int
    last_updated: int
    method: str  # POST | PUT | PATCH | DELETE
    content: str
    deleted: bool = False
    index: dict[str, list[tuple]] = field(default_factory=dict)
    #: (fhirpath, type, id) of references that must exist in the tenant
    references: list[tuple[str, str, str]] = field(default_factory=list)
    rid: int | None = None
    action: str = "create"
    #: the location prefix for error expressions (set by Bundle processing)
    where: str = ""


class UnitOfWork:
    def __init__(self, conn: Connection, tenant: str, actor: str):
        self.conn = conn
        self.tenant = tenant
        self.actor = actor
        self._ops: list[Prepared] = []
        self._flushed = 0
        #: (type, id) written but not yet flushed
        self.pending_keys: set[tuple[str, str]] = set()
        #: current rows read ahead for a batch of updates ((type, id) → Current or None)
        self.prefetched: dict[tuple[str, str], object] = {}
        #: (type, id) written in this transaction and still alive

    def add(self, op: Prepared) -> None:
        self._ops.append(op)
        self.pending_keys.add((op.type, op.id))

    def pending_for(self, rtype: str, rid: str) -> Prepared | None:
        for op in reversed(self._ops[self._flushed:]):
            if op.type == rtype and op.id == rid:
                return op
        return None

    def flush(self) -> None:
        ops = self._ops[self._flushed:]
        if not ops:
            return
        new = [op for op in ops if op.rid is None]
        for op, rid in zip(new, bulk.allocate_rids(self.conn, len(new))):
            op.rid = rid
        t = self.tenant
        bulk.insert_rows(self.conn, resource, RESOURCE_COLUMNS, [
            (op.rid, t, op.type, op.id, op.version, op.last_updated, op.deleted, op.content)
            for op in new])
        first = sql.allocate_seq(self.conn, t, len(ops))
        versions, events = [], []
        index_rows: dict[str, list[tuple]] = {}
        clear = [op.rid for op in ops if op.action != "create"]
        for n, op in enumerate(ops):
            seq = first + n
            versions.append((t, op.type, op.id, op.version, seq, op.last_updated, op.method,
                             op.deleted, op.content))
            events.append((t, seq, op.type, op.id, op.version, op.action, op.last_updated,
                           self.actor[:200]))
            if not op.deleted:
                _index_rows(t, op, index_rows)
        bulk.insert_rows(self.conn, resource_version, VERSION_COLUMNS, versions)
        sql.replace_index(self.conn, t, clear, {})
        for name, rows in index_rows.items():
            bulk.insert_rows(self.conn, INDEX_TABLES[name], INDEX_COLUMNS[name], rows)
        bulk.insert_rows(self.conn, event_log, EVENT_COLUMNS, events)
        self._flushed = len(self._ops)
        self.pending_keys.clear()

    def finish(self) -> None:
        """Flush, then check every reference written in the transaction against the database
        as it will be committed: the order of writes inside a transaction does not matter, and
        a reference to something deleted later in the same transaction fails."""
        self.flush()
        self._check_references([op for op in self._ops if not op.deleted])

    def _check_references(self, ops: list[Prepared]) -> None:
        wanted = {(t, i) for op in ops for _, t, i in op.references}
        if not wanted:
            return
        missing = wanted - sql.existing_ids(self.conn, self.tenant, wanted)
        if missing:
            for op in ops:
                for path, t, i in op.references:
                    if (t, i) in missing:
                        where = _located(op.where, path)
                        raise Unprocessable(
                            (f"{op.where}: " if op.where else "") +
                            f"reference {t}/{i} does not resolve to a resource in this "
                            "municipality", expression=where)

    @property
    def operations(self) -> list[Prepared]:
        return self._ops


def _located(entry: str, path: str) -> str:
    """``Observation.subject.reference`` inside ``Bundle.entry[1]`` →
    ``Bundle.entry[1].resource.subject.reference``."""
    if not entry:
        return path
    _, dot, rest = path.partition(".")
    return f"{entry}.resource" + (dot + rest if rest else "")


RESOURCE_COLUMNS = ("rid", "tenant", "type", "id", "version", "last_updated", "deleted", "content")
VERSION_COLUMNS = ("tenant", "type", "id", "version", "seq", "last_updated", "method", "deleted",
                   "content")
EVENT_COLUMNS = ("tenant", "seq", "type", "id", "version", "action", "time", "actor")


def _index_rows(tenant: str, op: Prepared, out: dict[str, list[tuple]]) -> None:
    head = (tenant, op.rid, op.type)
    for table, rows in op.index.items():
        if table not in _VALUE_COLUMNS or not rows:
            continue
        out.setdefault(table, []).extend(head + tuple(row) for row in stored_rows(table, rows))
