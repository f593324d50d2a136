"""One database transaction's worth of writes, flushed in batches.

Creates are buffered and inserted together (one multi-row INSERT per table), which is what
lets a 1,000-entry transaction Bundle commit in a handful of statements. Updates and deletes
check their version immediately (optimistic locking) and buffer the rest. Any read inside the
transaction flushes first, so reads always see the transaction's own writes.

Event sequence numbers are allocated at flush in operation order; the tenant row lock they
take is held to commit, which keeps the per-tenant sequence gap-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection

from fkj.errors import Unprocessable
from fkj.store import resources as sql


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
        #: (type, id) written in this transaction and still alive
        self.alive: set[tuple[str, str]] = set()
        self.dead: set[tuple[str, str]] = set()

    def add(self, op: Prepared) -> None:
        self._ops.append(op)
        key = (op.type, op.id)
        if op.deleted:
            self.alive.discard(key)
            self.dead.add(key)
        else:
            self.alive.add(key)
            self.dead.discard(key)

    def pending_for(self, rtype: str, rid: str) -> Prepared | None:
        for op in reversed(self._ops[self._flushed:]):
            if op.type == rtype and op.id == rid:
                return op
        return None

    def flush(self) -> None:
        ops = self._ops[self._flushed:]
        if not ops:
            return
        self._check_references(ops)
        new = [op for op in ops if op.rid is None]
        rids = sql.insert_new(self.conn, [
            {"tenant": self.tenant, "type": op.type, "id": op.id, "version": op.version,
             "last_updated": op.last_updated, "deleted": op.deleted, "content": op.content}
            for op in new])
        for op, rid in zip(new, rids):
            op.rid = rid
        first = sql.allocate_seq(self.conn, self.tenant, len(ops))
        versions, events = [], []
        index_rows: dict[str, list[dict]] = {}
        clear = [op.rid for op in ops if op.action != "create"]
        for n, op in enumerate(ops):
            seq = first + n
            versions.append({"tenant": self.tenant, "type": op.type, "id": op.id,
                             "version": op.version, "seq": seq, "last_updated": op.last_updated,
                             "method": op.method, "deleted": op.deleted, "content": op.content})
            events.append({"tenant": self.tenant, "seq": seq, "type": op.type, "id": op.id,
                           "version": op.version, "action": op.action,
                           "time": op.last_updated, "actor": self.actor[:200]})
            if not op.deleted:
                _index_rows(self.tenant, op, index_rows)
        sql.insert_versions(self.conn, versions)
        sql.replace_index(self.conn, self.tenant, clear, index_rows)
        sql.insert_events(self.conn, events)
        self._flushed = len(self._ops)

    def _check_references(self, ops: list[Prepared]) -> None:
        wanted = {(t, i) for op in ops for _, t, i in op.references}
        if not wanted:
            return
        missing = wanted - self.alive
        if missing:
            found = sql.existing_ids(self.conn, self.tenant, missing - self.dead)
            missing -= found
        if missing:
            for op in ops:
                for path, t, i in op.references:
                    if (t, i) in missing:
                        raise Unprocessable(
                            f"reference {t}/{i} does not resolve to a resource in this "
                            "municipality", expression=op.where + path)

    @property
    def operations(self) -> list[Prepared]:
        return self._ops


_COLUMNS = {
    "string": ("norm", "exact"),
    "token": ("system", "code", "text"),
    "reference": ("target_type", "target_id", "url", "ident_system", "ident_value"),
    "date": ("low", "high"),
    "number": ("low", "high"),
    "quantity": ("system", "code", "low", "high"),
    "uri": ("uri",),
}


def _index_rows(tenant: str, op: Prepared, out: dict[str, list[dict]]) -> None:
    for table, rows in op.index.items():
        cols = _COLUMNS.get(table)
        if cols is None or not rows:
            continue
        target = out.setdefault(table, [])
        base = {"tenant": tenant, "rid": op.rid, "type": op.type}
        for row in rows:
            d = dict(base)
            d["param"] = row[0]
            d.update(zip(cols, row[1:]))
            target.append(d)
