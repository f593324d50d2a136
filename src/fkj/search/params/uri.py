"""uri: exact match, ``:below`` (prefix) and ``:above`` (the stored uri is a prefix of it)."""

from __future__ import annotations

from sqlalchemy import literal, or_

from fkj.errors import InvalidSearch
from fkj.search.keys import key, whole
from fkj.search.normalise import like_escape
from fkj.search.parse import unescape


def predicate(idx, modifier: str | None, value: str, name: str):
    """``uri`` is stored as a bounded key, the whole value of a long one in ``uri_long``
    (:mod:`fkj.search.keys`): equality compares keys, ``:below`` reads the whole value."""
    v = unescape(value)
    if modifier is None:
        return idx.c.uri == key(v)
    if modifier == "below":
        return or_(idx.c.uri == key(v), whole(idx.c.uri, idx.c.uri_long).like(
            like_escape(v.rstrip("/")) + "/%", escape="\\"))
    if modifier == "above":
        # every prefix of v ending at a path boundary
        parts = v.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(3, len(parts) + 1)]
        return idx.c.uri.in_([key(p) for p in prefixes or [v]])
    raise InvalidSearch(f"modifier :{modifier} is not valid for uri parameter {name}",
                        expression=name)


__all__ = ["predicate", "literal"]
