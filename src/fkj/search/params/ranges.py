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


def compare(low_col, high_col, prefix: str, lo: float, hi: float, approx: float):
    eq = and_(low_col >= lo, high_col <= hi)
    if prefix == "eq":
        return eq
    if prefix == "ne":
        return not_(eq)
    if prefix == "gt":
        return high_col > hi
    if prefix == "lt":
        return low_col < lo
    if prefix == "ge":
        return or_(high_col > hi, eq)
    if prefix == "le":
        return or_(low_col < lo, eq)
    if prefix == "sa":
        return low_col >= hi
    if prefix == "eb":
        return high_col <= lo
    if prefix == "ap":
        return and_(low_col < hi + approx, high_col > lo - approx)
    raise ValueError(prefix)


def matches(low: float, high: float, prefix: str, lo: float, hi: float, approx: float) -> bool:
    """The same comparison in Python (used by the test oracle and in-memory filters)."""
    eq = low >= lo and high <= hi
    return {
        "eq": eq, "ne": not eq, "gt": high > hi, "lt": low < lo, "ge": high > hi or eq,
        "le": low < lo or eq, "sa": low >= hi, "eb": high <= lo,
        "ap": low < hi + approx and high > lo - approx,
    }[prefix]
