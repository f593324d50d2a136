"""token: ``code``, ``system|code``, ``|code``, ``system|``; ``:text``; ``:of-type``.

``:not`` is applied by the engine around the whole parameter; ``:in`` / ``:not-in`` expand a
ValueSet stored in the tenant (see fkj.search.valuesets).
"""

from __future__ import annotations

from sqlalchemy import and_

from fkj.errors import InvalidSearch
from fkj.search.keys import key
from fkj.search.normalise import like_escape, normalise_text
from fkj.search.parse import split_pipe, unescape


def predicate(idx, modifier: str | None, value: str, name: str):
    """``system`` and ``code`` are stored as bounded keys (:mod:`fkj.search.keys`)."""
    if modifier in (None, "not"):
        system, code = split_pipe(value)
        if system is None:
            return idx.c.code == key(code)
        if system == "":
            return and_(idx.c.system.is_(None), idx.c.code == key(code))
        if code == "":
            return idx.c.system == key(system)
        return and_(idx.c.system == key(system), idx.c.code == key(code))
    if modifier == "text":
        return idx.c.text.like(like_escape(normalise_text(unescape(value))) + "%", escape="\\")
    raise InvalidSearch(f"modifier :{modifier} is not valid for token parameter {name}",
                        expression=name)


def of_type_parts(value: str, name: str) -> tuple[str, str, str]:
    parts = value.split("|")
    if len(parts) != 3 or not all(parts):
        raise InvalidSearch(f"{name}:of-type needs system|code|value, got {value!r}",
                            expression=name)
    return parts[0], parts[1], parts[2]
