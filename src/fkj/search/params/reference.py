"""reference: ``id``, ``Type/id``, absolute URL, ``:[type]``, ``:identifier``."""

from __future__ import annotations

from sqlalchemy import and_

from fkj.errors import InvalidSearch
from fkj.model.references import split_relative
from fkj.search.parse import split_pipe, unescape


def predicate(idx, modifier: str | None, value: str, name: str, *, own_base: str,
              known_type) -> object:
    v = unescape(value)
    if modifier == "identifier":
        system, code = split_pipe(value)
        if system is None:
            return idx.c.ident_value == code
        if code == "":
            return idx.c.ident_system == system
        return and_(idx.c.ident_system == system, idx.c.ident_value == code)
    if modifier is not None and modifier not in ("missing",):
        if not known_type(modifier):
            raise InvalidSearch(f"modifier :{modifier} is not valid for reference parameter "
                                f"{name}", expression=name)
        return and_(idx.c.target_type == modifier, idx.c.target_id == v.split("/")[-1])
    if v.startswith(own_base):
        v = v[len(own_base):]
    if v.startswith(("http://", "https://", "urn:")):
        return idx.c.url == v
    rel = split_relative(v)
    if rel:
        return and_(idx.c.target_type == rel[0], idx.c.target_id == rel[1])
    return idx.c.target_id == v
