"""Audit records that every backend can store, whatever was attempted.

An audit record repeats what a caller sent — a path, a query, a header, a body's error —
and must be stored even when that was hostile. Two kinds of code point cannot be stored
as they are:

* **NUL (U+0000)**: PostgreSQL's ``text`` and ``jsonb`` refuse it (``unsupported Unicode
  escape sequence``), and SQLite's string functions end a value at it;
* **lone surrogates (U+D800–U+DFFF)**: not encodable as UTF-8 at all (orjson, psycopg and
  sqlite3 all refuse them).

Such a code point is replaced in every string of the record (keys included) by the six
characters ``\\uXXXX`` (lower-case hex), so that the record shows what was attempted
(``Patient/a\\u0000b``) and its canonical JSON holds no character a backend refuses. The
escape is not reversible in general (a caller may send the six characters themselves);
the record says what was asked, not a byte-exact copy — a copy of the raw bytes is kept
only for records that still cannot be stored (:mod:`fkj.security.audit.quarantine`).

Cost: :func:`canonical_storable` serialises once and scans the text for ``\\u0000``; only a
record that has one (or whose serialisation fails) is walked and escaped.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: orjson writes NUL as this escape; a record whose JSON has none holds no NUL
_NUL_ESCAPE = "\\u0000"


def _escape(m: re.Match) -> str:
    return f"\\u{ord(m.group()):04x}"


def storable_text(value: str) -> str:
    """``value`` with NUL and lone surrogates replaced by ``\\uXXXX``.

    >>> storable_text("Patient/a\\x00b")
    'Patient/a\\\\u0000b'
    """
    return _UNSTORABLE.sub(_escape, value)


def storable(obj: Any) -> Any:
    """A copy of ``obj`` (JSON-like: dicts, lists, strings, numbers) whose strings are all
    :func:`storable_text`."""
    if isinstance(obj, str):
        return storable_text(obj)
    if isinstance(obj, dict):
        return {storable_text(k) if isinstance(k, str) else k: storable(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [storable(v) for v in obj]
    return obj


def canonical_storable(event: dict) -> tuple[dict, str]:
    """(``event``, its canonical JSON) — or, if it holds a code point no backend stores,
    (the escaped copy, its canonical JSON)."""
    try:
        text = orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # a lone surrogate (or a value JSON cannot hold)
        event = storable(event)
        return event, orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()
    if _NUL_ESCAPE in text:
        clean = storable(event)
        return clean, orjson.dumps(clean, option=orjson.OPT_SORT_KEYS).decode()
    return event, text


__all__ = ["canonical_storable", "storable", "storable_text"]
