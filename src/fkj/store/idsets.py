"""SQLite: sets of ids that a statement tests membership in, kept per connection.

The access policy tests every Patient reference of a search's rows against the caller's care
relation — a set of a few hundred patient ids that stays the same for many requests. Bound
as one JSON parameter (``IN (SELECT value FROM json_each(?))``), SQLite builds it into a
temporary index for every statement: 32 of a physician's search's 48 µs. Here the set is
loaded once per pooled connection into the temporary table ``fkj_idset`` (created when the
connection opens) and each membership test is an index lookup.

* :class:`IdSet` — a set of ids with a process-unique number;
* :func:`member` — ``col`` is in the set (a correlated ``EXISTS`` on ``temp.fkj_idset``; the
  set's number is the bound parameter ``fkj_idset_sid``, so the statement's text, and its
  compiled form, are the same for every set);
* :func:`install` — on a SQLite engine (``fkj.store.engine.make_engine``): creates the table
  on connect and, before a statement that names it runs, loads its set into the connection
  if it is not there yet.

The connection remembers (in its ``info``) which sets it holds; a rollback forgets them,
since the rows it loaded in that transaction are gone too. A set missing from the table
reads as empty — no id is a member — so a mistake here can deny, never grant.
PostgreSQL keeps the JSON parameter: its hash of the list costs little.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, event, exists

#: sets kept per connection (the oldest is dropped beyond this)
PER_CONNECTION = 32
_INFO_KEY = "fkj_idsets"
_PARAM = "fkj_idset_sid"
_DDL = ("CREATE TEMP TABLE IF NOT EXISTS fkj_idset (sid INTEGER NOT NULL, value TEXT NOT NULL, "
        "PRIMARY KEY (sid, value)) WITHOUT ROWID")

_table = Table("fkj_idset", MetaData(), Column("sid", Integer, primary_key=True),
               Column("value", String, primary_key=True), schema="temp")
_numbers = itertools.count(1)
#: live sets by number: a statement naming a set runs while its decision context (which
#: holds the set) is in use
_live: weakref.WeakValueDictionary[int, IdSet] = weakref.WeakValueDictionary()


class IdSet:
    __slots__ = ("sid", "values", "__weakref__")

    def __init__(self, values) -> None:
        self.sid = next(_numbers)
        self.values = tuple(sorted(set(values)))
        _live[self.sid] = self


def member(col, idset: IdSet):
    """``col`` is one of ``idset``'s ids."""
    s = _table.alias("fkj_idset_m")
    return exists().where(s.c.sid == bindparam(_PARAM, idset.sid, unique=False),
                          s.c.value == col)


def install(engine) -> None:
    """Wire the table and the loading into a SQLite ``engine``."""
    event.listen(engine, "connect", _create)
    event.listen(engine, "before_cursor_execute", _load)
    event.listen(engine, "rollback", _forget)
    event.listen(engine, "rollback_savepoint", lambda conn, name, context: _forget(conn))
    event.listen(engine.pool, "reset", _forget_on_reset)


def _create(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(_DDL)
    finally:
        cur.close()


def _load(conn, cursor, statement, parameters, context, executemany) -> None:
    if "fkj_idset" not in statement or context is None:
        return
    compiled = getattr(context, "compiled_parameters", None) or ()
    sid = compiled[0].get(_PARAM) if compiled else None
    if sid is None:
        return
    info = conn.connection.info
    held: OrderedDict | None = info.get(_INFO_KEY)
    if held is None:
        held = info[_INFO_KEY] = OrderedDict()
    if sid in held:
        held.move_to_end(sid)
        return
    idset = _live.get(sid)
    if idset is None:  # cannot happen while its context is in use; empty: denies
        return
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute("DELETE FROM temp.fkj_idset WHERE sid = ?", (sid,))
        cur.executemany("INSERT OR IGNORE INTO temp.fkj_idset (sid, value) VALUES (?, ?)",
                        [(sid, v) for v in idset.values])
        held[sid] = True
        while len(held) > PER_CONNECTION:
            old, _ = held.popitem(last=False)
            cur.execute("DELETE FROM temp.fkj_idset WHERE sid = ?", (old,))
    finally:
        cur.close()


def _forget(conn) -> None:
    try:
        conn.connection.info.pop(_INFO_KEY, None)
    except Exception:  # noqa: BLE001 - a closed or invalidated connection has no sets
        pass


def _forget_on_reset(dbapi_conn, record, _reset_state) -> None:
    # the pool rolls back every connection returned to it; rows are lost only if a
    # transaction is still open then
    if getattr(dbapi_conn, "in_transaction", True):
        record.info.pop(_INFO_KEY, None)
