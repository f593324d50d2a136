"""Prefix comparisons between ranges, shared by date, number and quantity.

Both the stored value and the searched value are half-open ranges ``[low, high)`` implied by
their precision (``2024-03`` is the whole of March; ``100`` is ``[99.5, 100.5)``). The
meaning of each prefix follows the R4 search specification (§3.1.1.4.1.1):

==  ==========================================================
eq  the target range lies within the search range
ne  not eq
gt  the target range extends above the search range
lt  the target range extends below the search range
ge  gt or eq
le  lt or eq
sa  the target range starts at or after the end of the search range
eb  the target range ends at or before the start of the search range
ap  the target range overlaps the search range widened by 10 % of its distance from now
    (dates) or of the value (numbers)
==  ==========================================================
"""

from __future__ import annotations

from sqlalchemy import and_, not_, or_

#: relative tolerance for range ends: the extractor and the parser compute ``value ± half a
#: unit of precision`` separately in binary floating point (0.8 → 0.8500000000000001 vs 0.85);
#: ends closer than this are equal. 1e-13 of an epoch-seconds date is ~0.2 ms.
REL_EPS = 1e-13


def _eps(lo: float, hi: float) -> float:
    return REL_EPS * max(abs(lo), abs(hi))


def compare(low_col, high_col, prefix: str, lo: float, hi: float, approx: float):
    e = _eps(lo, hi)
    eq = and_(low_col >= lo - e, high_col <= hi + e)
    if prefix == "eq":
        return eq
    if prefix == "ne":
        return not_(eq)
    if prefix == "gt":
        return high_col > hi + e
    if prefix == "lt":
        return low_col < lo - e
    if prefix == "ge":
        return or_(high_col > hi + e, eq)
    if prefix == "le":
        return or_(low_col < lo - e, eq)
    if prefix == "sa":
        return low_col >= hi - e
    if prefix == "eb":
        return high_col <= lo + e
    if prefix == "ap":
        return and_(low_col < hi + approx, high_col > lo - approx)
    raise ValueError(prefix)


def index_bound(low_col, high_col, prefix: str, lo: float, hi: float, approx: float):
    """What :func:`compare` implies but does not state, for every stored range with
    ``low <= high`` (the extractor guarantees it), so that an index on (…, low) or
    (…, high) can range-scan the comparison: ``eq`` gains ``low <= hi`` (a closed range on
    ``low`` instead of an open-ended ``low >= lo``), ``le`` the same, ``ge`` gains
    ``high >= lo``. The other prefixes are one column compared with a constant already (or,
    ``ne``, no range at all): None. Nothing is stated twice, which would make PostgreSQL
    count its selectivity twice."""
    e = _eps(lo, hi)
    if prefix in ("eq", "le"):
        return low_col <= hi + e
    if prefix == "ge":
        return high_col >= lo - e
    return None


def matches(low: float, high: float, prefix: str, lo: float, hi: float, approx: float) -> bool:
    """The same comparison in Python (used by the test oracle and in-memory filters)."""
    e = _eps(lo, hi)
    eq = low >= lo - e and high <= hi + e
    return {
        "eq": eq, "ne": not eq, "gt": high > hi + e, "lt": low < lo - e,
        "ge": high > hi + e or eq, "le": low < lo - e or eq, "sa": low >= hi - e,
        "eb": high <= lo + e,
        "ap": low < hi + approx and high > lo - approx,
    }[prefix]
