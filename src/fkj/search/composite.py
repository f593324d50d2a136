"""Composite search parameters (``code-value-quantity=http://loinc.org|8480-6$gt100``).

The extractor gives composite rows as ``(param, c1, c2[, c3])`` where each ``ci`` is the
component's own row without its param code. :func:`flatten` turns one into the flat columns of
``idx_composite``: every component gets five slots ``s v t lo hi``:

=========  ============================================
token      system, code, text, -, -
quantity   system, code, -, low, high
date       -, -, -, low, high   (number: the same)
string     norm, exact, -, -, -
uri        uri, -, -, -, -
reference  target_type, target_id, url, -, -
=========  ============================================

The ``s`` and ``v`` slots hold :func:`fkj.search.keys.key` of their values (the lookup index
holds ``c1_v`` and ``c1_s``); a string or uri component whose value is keyed keeps its whole
value in its (otherwise unused) ``t`` slot, which ``:contains`` / starts-with / ``:below``
read (see :mod:`fkj.search.keys`).

A search value has one part per component, separated by an unescaped ``$``; each part is
matched by the component's own predicate builder against that component's slots, and all the
parts must hold for the *same* index row (so the code and the value come from the same
element, e.g. the same ``Observation.component``).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from sqlalchemy import and_, or_, true

from fkj.errors import InvalidSearch
from fkj.search.keys import is_long, key
from fkj.store.schema import idx_composite

SLOTS = ("s", "v", "t", "lo", "hi")
_EMPTY = (None,) * 5


def _flat(comp) -> tuple:
    comp = tuple(comp) if comp is not None else ()
    n = len(comp)
    if n == 0:
        return _EMPTY
    if n == 1:  # uri
        u = comp[0]
        return (key(u), None, u if is_long(u) else None, None, None)
    if n == 2:
        if all(x is None or isinstance(x, (int, float)) for x in comp):
            return (None, None, None, comp[0], comp[1])
        norm = comp[0]  # string: (norm, exact)
        return (key(norm), key(comp[1]), norm if is_long(norm) else None, None, None)
    if n == 3:
        return (key(comp[0]), key(comp[1]), comp[2], None, None)
    if n == 4:
        return (key(comp[0]), key(comp[1]), None, comp[2], comp[3])
    return (key(comp[0]), key(comp[1]), comp[2], None, None)


def flatten(row: tuple) -> tuple:
    """``(param, c1, c2[, c3])`` → ``(param, c1_s, c1_v, …, c3_hi)`` (15 value columns)."""
    param, *comps = row
    comps = (list(comps) + [None, None, None])[:3]
    out: list = [param]
    for c in comps:
        out.extend(_flat(c))
    return tuple(out)


def split_dollar(value: str) -> list[str]:
    return [p for p in re.split(r"(?<!\\)\$", value)]


def _columns(idx, i: int, ctype: str) -> SimpleNamespace:
    s, v, t, lo, hi = (idx.c[f"c{i}_{k}"] for k in SLOTS)
    if ctype == "token":
        cols = dict(system=s, code=v, text=t)
    elif ctype == "quantity":
        cols = dict(system=s, code=v, low=lo, high=hi)
    elif ctype in ("date", "number"):
        cols = dict(low=lo, high=hi)
    elif ctype == "string":
        cols = dict(norm=s, exact=v, norm_long=t)
    elif ctype == "uri":
        cols = dict(uri=s, uri_long=t)
    else:  # reference
        cols = dict(target_type=s, target_id=v, url=t, ident_system=t, ident_value=t)
    return SimpleNamespace(c=SimpleNamespace(**cols))


def component_types(builder, p) -> list[str]:
    out = []
    for url, _expr in p.components:
        cp = builder.registry.by_url(url)
        if cp is None:
            raise InvalidSearch(f"composite parameter {p.code}: component {url} is unknown",
                                expression=p.code)
        out.append(cp.type)
    return out


#: component types a composite value part may have (matched like a parameter of that type)
_PART_TYPES = frozenset({"token", "quantity", "number", "date", "string", "uri", "reference"})


def _part_predicate(builder, ctype: str, cols, part: str, raw_name: str, code: str):
    """``part`` of a search value matched by its component's own predicate against ``cols``
    (the component's slots of an ``idx_composite`` row, or a whole index table)."""
    if ctype not in _PART_TYPES:
        raise InvalidSearch(f"composite parameter {code}: component type {ctype} is not "
                            "supported", expression=raw_name)
    return builder.type_predicate(ctype, cols, None, part, raw_name)


def _parse(builder, p, values: list[str], raw_name: str) -> tuple[list[str], list[list[str]]]:
    types = component_types(builder, p)
    if not 1 <= len(types) <= 3:
        raise InvalidSearch(f"composite parameter {p.code} is not supported", expression=raw_name)
    parsed = []
    for value in values:
        parts = split_dollar(value)
        if len(parts) != len(types) or any(x == "" for x in parts):
            raise InvalidSearch(f"{raw_name}: a value needs {len(types)} parts separated by $, "
                                f"got {value!r}", expression=raw_name)
        parsed.append(parts)
    return types, parsed


def _stored(builder, rtype, p) -> list[tuple[str, tuple[str, ...] | None]]:
    """What answers ``p``: per parameter code whose rows it reads (itself, or both of a
    ``combo-*`` one) that code and, for the composites searched as an intersection of two
    other parameters (fkj.search.extract.INTERSECTION_PARAMS), those two."""
    from fkj.search.extract import intersection_of, stored_params

    return [(s, intersection_of(builder.param(rtype, s) if rtype else None, s))
            for s in stored_params(p, p.code)]


def composite_criterion(builder, r, rtype, p, values: list[str], raw_name: str):
    types, parsed = _parse(builder, p, values, raw_name)
    stored = _stored(builder, rtype, p)

    def build(idx):
        return or_(*[and_(*[_part_predicate(builder, ctype, _columns(idx, i, ctype), part,
                                            raw_name, p.code)
                            for i, (ctype, part) in enumerate(zip(types, parts), start=1)])
                     for parts in parsed])

    build(idx_composite.alias())  # validate the values now (errors before any SQL runs)
    if all(inter is None for _, inter in stored):
        # a first token component is an equality the lookup index (…, c1_v, c1_s) finds: a
        # list that can drive the query; otherwise a per-row check through
        # ix_idx_composite_rid
        return builder._has_row(r, idx_composite, p.code, rtype, build,
                                correlated=types[0] != "token")
    alternatives = []
    for code, inter in stored:
        if inter is None:
            alternatives.append(builder._has_row(r, idx_composite, code, rtype, build, True))
        else:
            alternatives.append(or_(*[
                and_(*[_has_part(builder, r, rtype, sub, ctype, part, raw_name, True)
                       for sub, ctype, part in zip(inter, types, parts)])
                for parts in parsed]))
    check = or_(*alternatives)
    code, inter = stored[0]
    if len(stored) > 1 or types[0] != "token":
        return check
    # code-value-quantity itself: its code rows (any of the values' codes) drive, the pairs
    # are checked per candidate row (one value: the driver is its code, the value is left)
    first = [parts[0] for parts in parsed]
    driver = _has_part(builder, r, rtype, inter[0], types[0], first, raw_name, False)
    if len(parsed) == 1:
        return and_(driver, _has_part(builder, r, rtype, inter[1], types[1], parsed[0][1],
                                      raw_name, True))
    return and_(driver, check)


def _has_part(builder, r, rtype, code: str, ctype: str, part, raw_name: str, correlated: bool):
    """``r`` has a row of parameter ``code`` matching the component value ``part`` (a list:
    any of them)."""
    from fkj.store.schema import INDEX_TABLES

    parts = part if isinstance(part, list) else [part]
    return builder._has_row(r, INDEX_TABLES[ctype], code, rtype, lambda idx: or_(*[
        _part_predicate(builder, ctype, idx, x, raw_name, code) for x in parts]), correlated)


def composite_present(builder, r, rtype, p):
    """``r`` has a value of composite ``p`` (for ``:missing``)."""
    from fkj.store.schema import INDEX_TABLES

    types = component_types(builder, p)
    out = []
    for code, inter in _stored(builder, rtype, p):
        if inter is None:
            out.append(builder._has_row(r, idx_composite, code, rtype, lambda idx: true(), True))
        else:
            out.append(and_(*[builder._has_row(r, INDEX_TABLES[ctype], sub, rtype,
                                               lambda idx: true(), True)
                              for sub, ctype in zip(inter, types)]))
    return or_(*out)
