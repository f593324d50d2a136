"""string: starts-with, case- and accent-insensitive; ``:exact`` and ``:contains``."""

from __future__ import annotations

from fkj.errors import InvalidSearch
from fkj.search.normalise import like_escape, normalise_text
from fkj.search.parse import unescape


def predicate(idx, modifier: str | None, value: str, name: str):
    v = unescape(value)
    if modifier is None:
        return idx.c.norm.like(like_escape(normalise_text(v)) + "%", escape="\\")
    if modifier == "exact":
        return idx.c.exact == v
    if modifier == "contains":
        return idx.c.norm.like("%" + like_escape(normalise_text(v)) + "%", escape="\\")
    raise InvalidSearch(f"modifier :{modifier} is not valid for string parameter {name}",
                        expression=name)
