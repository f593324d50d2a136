"""Bounded keys: how index values of any length are stored and searched.

A B-tree index entry on PostgreSQL holds at most 2,704 bytes (a third of a page), so a
9,000-character family name or code could not be indexed and its write failed with a 500.
Every text column of the index tables that a lookup index holds, or that a search compares
for equality, therefore stores :func:`key` of the value:

* a value shorter than :data:`KEY_CHARS` (200) characters is stored as it is — nearly
  every value, so keys cost nothing on normal data and change nothing in it;
* a longer one is stored as its first :data:`PREFIX_CHARS` (136) characters followed by
  the 64 hex digits of its SHA-256: exactly 200 characters (at most 800 bytes in UTF-8,
  so an entry of two such columns fits). A stored value of 200 characters is always a
  key, never a value, so the two cannot be confused.

Equality (token ``code``/``system``, ``:of-type``, ``:in``, quantity units, uri, string
``:exact``, composite components) compares the key of the search value with the stored
key: exact (up to a SHA-256 collision). Starts-with, ``:contains``, uri ``:below`` and
sorting need the whole value: where a column is keyed, its whole value is kept beside it
in an unindexed column (``idx_string.norm_long``, ``idx_uri.uri_long``; in a composite
row the component's ``t`` slot), NULL when the value was short. A search then narrows by
the first :data:`PREFIX_CHARS` characters on the indexed column and checks
``coalesce(long, column)`` (:func:`whole`).

The rows :func:`fkj.search.extract.extract` gives hold the values; :func:`stored_rows`
turns them into the rows that are written (every write path calls it), and
:data:`INDEX_COLUMNS` names their columns.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func

#: values of at least this many characters are stored as a key of exactly this length
KEY_CHARS = 200
#: the characters of the value a key begins with (the rest is its SHA-256 in hex)
PREFIX_CHARS = KEY_CHARS - 64

#: the value columns of each index table, in the order of :func:`stored_rows`
VALUE_COLUMNS = {
    "string": ("norm", "exact", "norm_long"),
    "token": ("system", "code", "text"),
    "reference": ("target_type", "target_id", "url", "ident_system", "ident_value"),
    "date": ("low", "high"),
    "number": ("low", "high"),
    "quantity": ("system", "code", "low", "high"),
    "uri": ("uri", "uri_long"),
    "composite": tuple(f"c{i}_{k}" for i in (1, 2, 3) for k in ("s", "v", "t", "lo", "hi")),
}
INDEX_COLUMNS = {k: ("tenant", "rid", "type", "param", *v) for k, v in VALUE_COLUMNS.items()}


def key(value):
    """The stored (and searched) form of ``value``.

    >>> key("8480-6")
    '8480-6'
    >>> k = key("x" * 9000)
    >>> len(k), k[:3], k == key("x" * 9000), k == key("x" * 8999)
    (200, 'xxx', True, False)
    """
    if type(value) is not str or len(value) < KEY_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return value[:PREFIX_CHARS] + digest


def is_long(value) -> bool:
    """Whether ``value`` is stored as a key (and its whole value beside it)."""
    return type(value) is str and len(value) >= KEY_CHARS


def whole(column, long_column):
    """The whole value of a keyed column: its long companion where there is one."""
    return func.coalesce(long_column, column)


def stored_rows(table: str, rows: list[tuple]) -> list[tuple]:
    """``extract`` rows of ``table`` → the rows written (keys, companions, composite rows
    flattened to their columns; see the module docstring)."""
    # (on every write: plain loops, no work on the usual short values)
    if table == "string":
        out = []
        for p, n, e in rows:
            if len(n) < KEY_CHARS and len(e) < KEY_CHARS:
                out.append((p, n, e, None))
            else:
                out.append((p, key(n), key(e), n if len(n) >= KEY_CHARS else None))
        return out
    if table == "uri":
        return [(p, u, None) if len(u) < KEY_CHARS else (p, key(u), u) for p, u in rows]
    if table == "token" or table == "quantity":
        for r in rows:
            s, c = r[1], r[2]
            if (type(s) is str and len(s) >= KEY_CHARS) or (type(c) is str
                                                             and len(c) >= KEY_CHARS):
                return [(r[0], key(r[1]), key(r[2]), *r[3:]) for r in rows]
        return rows
    if table == "composite":
        from fkj.search.composite import flatten
        return [flatten(r) for r in rows]
    return rows


__all__ = ["INDEX_COLUMNS", "KEY_CHARS", "PREFIX_CHARS", "VALUE_COLUMNS", "is_long", "key",
           "stored_rows", "whole"]
