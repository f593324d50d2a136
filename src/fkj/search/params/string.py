"""string: starts-with, case- and accent-insensitive; ``:exact`` and ``:contains``.

``norm`` and ``exact`` hold bounded keys of values of 200 characters or more, the whole
folded value then in ``norm_long`` (:mod:`fkj.search.keys`): ``:exact`` compares keys,
starts-with narrows on the key's first 136 characters and ``:contains`` reads the whole
value.
"""

from __future__ import annotations

from sqlalchemy import and_

from fkj.errors import InvalidSearch
from fkj.search.keys import PREFIX_CHARS, key, whole
from fkj.search.normalise import like_escape, normalise_text
from fkj.search.parse import unescape


def predicate(idx, modifier: str | None, value: str, name: str, *, dialect: str = ""):
    """Starts-with is ``norm LIKE 'p%'`` and, for ``dialect`` sqlite or postgresql, also the
    code-point range ``[p, p')`` that an index can scan: SQLite's LIKE is case-insensitive and
    never uses a BINARY index; on PostgreSQL, LIKE is not leakproof, so under row-level
    security it is never an index condition, while the ``text_pattern_ops`` comparisons
    ``~>=~`` / ``~<~`` (byte order in any collation) are, on ``ix_idx_string_lookup``.

    A prefix of :data:`~fkj.search.keys.PREFIX_CHARS` characters or more reaches past what
    a key keeps of its value: the range is then that of its first ``PREFIX_CHARS``
    characters, and the LIKE is checked on the whole value."""
    v = unescape(value)
    if modifier is None:
        prefix = normalise_text(v)
        if len(prefix) < PREFIX_CHARS:
            scan = prefix
            cond = idx.c.norm.like(like_escape(prefix) + "%", escape="\\")
        else:
            scan = prefix[:PREFIX_CHARS]
            cond = whole(idx.c.norm, idx.c.norm_long).like(like_escape(prefix) + "%",
                                                           escape="\\")
        upper = _after_prefix(scan) if dialect in ("sqlite", "postgresql") else None
        if upper is not None:
            # the range only excludes upper-case ASCII, which the case-folded norm never has
            # (SQLite's LIKE would match it)
            if dialect == "sqlite":
                cond = and_(idx.c.norm >= scan, idx.c.norm < upper, cond)
            else:
                cond = and_(idx.c.norm.op("~>=~")(scan), idx.c.norm.op("~<~")(upper), cond)
        return cond
    if modifier == "exact":
        return idx.c.exact == key(v)
    if modifier == "contains":
        return whole(idx.c.norm, idx.c.norm_long).like(
            "%" + like_escape(normalise_text(v)) + "%", escape="\\")
    raise InvalidSearch(f"modifier :{modifier} is not valid for string parameter {name}",
                        expression=name)


def _after_prefix(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` in code-point
    order (SQLite's BINARY)."""
    if not prefix or ord(prefix[-1]) >= 0x10FFFF or 0xD7FF <= ord(prefix[-1]) < 0xE000:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
