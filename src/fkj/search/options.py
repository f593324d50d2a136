"""The result parameters of a search (``_count``, ``_sort``, ``_total``, ``_summary``,
``_elements``, ``_include``/``_revinclude``, ``_cursor``): parsed into :class:`Options`, and
the cursor of the next page — opaque to the client, the last row's sort keys and rid — with
the condition that continues after it."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import orjson
from sqlalchemy import and_, false, or_

from fkj.errors import InvalidSearch


@dataclass
class Options:
    count: int = 50
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    #: "auto" (the default): the total only when the first page holds every match (it is then
    #: free); "none"; "accurate" (count); "estimate" (PostgreSQL: the planner's estimate)
    total: str = "auto"
    cursor: tuple | None = None
    include: list[tuple[str, str, str | None, bool]] = field(default_factory=list)
    revinclude: list[tuple[str, str, str | None, bool]] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] | None = None
    strict: bool = False



def parse_options(params, default_count, max_count, default_total, strict):
    opts = Options(count=default_count, total=default_total, strict=strict)
    rest = []
    for name, value in params:
        base = name.split(":", 1)[0]
        if base == "_count":
            if not value.isdigit():
                raise InvalidSearch(f"_count must be a non-negative integer, got {value!r}",
                                    expression="_count")
            opts.count = min(int(value), max_count)
        elif base == "_sort":
            for key in value.split(","):
                key = key.strip()
                if not key or key in ("-",):
                    raise InvalidSearch("_sort has an empty key", expression="_sort")
                opts.sort.append((key.lstrip("-"), key.startswith("-")))
        elif base == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise InvalidSearch("_total must be none, estimate or accurate",
                                    expression="_total")
            opts.total = value
        elif base == "_summary":
            if value not in ("true", "false", "text", "data", "count"):
                raise InvalidSearch("_summary must be true, false, text, data or count",
                                    expression="_summary")
            opts.summary = None if value == "false" else value
            if value == "count":
                opts.total = "accurate"
        elif base == "_elements":
            opts.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif base == "_cursor":
            opts.cursor = decode_cursor(value)
        elif base in ("_include", "_revinclude"):
            iterate = name.endswith(":iterate") or name.endswith(":recurse")
            spec = parse_include(value, base)
            (opts.include if base == "_include" else opts.revinclude).append((*spec, iterate))
        elif base in ("_format", "_pretty"):
            continue
        elif base in ("_contained", "_containedType"):
            if value not in ("false", "container"):
                raise InvalidSearch(f"{base}={value} is not supported", expression=base)
        else:
            rest.append((name, value))
    return opts, rest


def parse_include(value: str, name: str) -> tuple[str, str, str | None]:
    if value == "*":
        return "*", "*", None
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidSearch(f"{name} must be Type:param[:targetType] or *, got {value!r}",
                            expression=name)
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(value: str) -> tuple:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        if not isinstance(data, list) or not data or not isinstance(data[-1], int) or not all(
                x is None or isinstance(x, (int, float, str)) for x in data):
            raise ValueError
        return tuple(data)
    except (ValueError, orjson.JSONDecodeError, TypeError):
        raise InvalidSearch("_cursor is not a cursor this server issued",
                            expression="_cursor") from None


def after_cursor(sort_exprs, r, cursor: tuple):
    if len(cursor) != len(sort_exprs) + 1:
        raise InvalidSearch("_cursor does not fit this search's _sort", expression="_cursor")
    for (e, _, _), v in zip(sort_exprs, cursor):
        numeric = _is_numeric(e)
        if v is not None and (isinstance(v, str) == numeric or isinstance(v, bool)):
            raise InvalidSearch("_cursor does not fit this search's _sort", expression="_cursor")
    keys = [(e, desc) for e, desc, _ in sort_exprs] + [(r.c.rid, False)]
    ors = []
    for i, (expr, desc) in enumerate(keys):
        eqs = [_null_safe_eq(keys[j][0], cursor[j]) for j in range(i)]
        v = cursor[i]
        if v is None:
            # NULLs sort first ascending (we coalesce sort keys, so only rid is never null)
            step = expr.is_not(None) if not desc else false()
        elif desc:
            step = or_(expr < v, expr.is_(None))
        else:
            step = expr > v
        ors.append(and_(*eqs, step))
    return or_(*ors)


def _is_numeric(expr) -> bool:
    try:
        return expr.type.python_type in (int, float)
    except NotImplementedError:
        return False


def reject_nul(params) -> None:
    for name, value in params:
        if "\x00" in name or "\x00" in value:
            raise InvalidSearch(f"parameter {name!r} contains a NUL character",
                                expression=name.replace("\x00", ""))


def _null_safe_eq(expr, v):
    return expr.is_(None) if v is None else expr == v
