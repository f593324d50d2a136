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

A search value has one part per component, separated by an unescaped ``$``; each part is
matched by the component's own predicate builder against that component's slots, and all the
parts must hold for the *same* index row (so the code and the value come from the same
element, e.g. the same ``Observation.component``).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from sqlalchemy import and_, or_

from fkj.errors import InvalidSearch
from fkj.store.schema import idx_composite

SLOTS = ("s", "v", "t", "lo", "hi")
_EMPTY = (None,) * 5


def _flat(comp) -> tuple:
    comp = tuple(comp) if comp is not None else ()
    n = len(comp)
    if n == 0:
        return _EMPTY
    if n == 1:
        return (comp[0], None, None, None, None)
    if n == 2:
        if all(x is None or isinstance(x, (int, float)) for x in comp):
            return (None, None, None, comp[0], comp[1])
        return (comp[0], comp[1], None, None, None)
    if n == 3:
        return (comp[0], comp[1], comp[2], None, None)
    if n == 4:
        return (comp[0], comp[1], None, comp[2], comp[3])
    return (comp[0], comp[1], comp[2], None, None)


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
        cols = dict(norm=s, exact=v)
    elif ctype == "uri":
        cols = dict(uri=s)
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


def composite_criterion(builder, r, rtype, p, values: list[str], raw_name: str):
    from fkj.search.params import date as date_p
    from fkj.search.params import number as number_p
    from fkj.search.params import reference as reference_p
    from fkj.search.params import string as string_p
    from fkj.search.params import token as token_p
    from fkj.search.params import uri as uri_p

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

    def build(idx):
        ors = []
        for parts in parsed:
            conds = []
            for i, (ctype, part) in enumerate(zip(types, parts), start=1):
                ns = _columns(idx, i, ctype)
                if ctype == "token":
                    conds.append(token_p.predicate(ns, None, part, raw_name))
                elif ctype == "quantity":
                    conds.append(number_p.quantity_predicate(ns, None, part, raw_name))
                elif ctype == "number":
                    conds.append(number_p.predicate(ns, None, part, raw_name))
                elif ctype == "date":
                    conds.append(date_p.predicate(ns.c.low, ns.c.high, None, part, raw_name))
                elif ctype == "string":
                    conds.append(string_p.predicate(ns, None, part, raw_name))
                elif ctype == "uri":
                    conds.append(uri_p.predicate(ns, None, part, raw_name))
                elif ctype == "reference":
                    conds.append(reference_p.predicate(ns, None, part, raw_name,
                                                       own_base=builder.own_base,
                                                       known_type=builder.known_type))
                else:
                    raise InvalidSearch(f"composite parameter {p.code}: component type {ctype} "
                                        "is not supported", expression=raw_name)
            ors.append(and_(*conds))
        return or_(*ors)

    build(idx_composite.alias())  # validate the values now (errors before any SQL runs)
    # a first token component is an equality the lookup index (…, c1_v, c1_s) finds: a list
    # that can drive the query; otherwise a per-row check through ix_idx_composite_rid
    return builder._has_row(r, idx_composite, p.code, rtype, build,
                            correlated=types[0] != "token")
