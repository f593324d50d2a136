"""number and quantity: prefixes on ranges implied by the precision of the value."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from sqlalchemy import and_

from fkj.errors import InvalidSearch
from fkj.search.keys import key
from fkj.search.params.ranges import compare
from fkj.search.parse import split_pipe, split_prefix


def number_range(text: str) -> tuple[float, float]:
    """``[low, high)`` implied by the significant digits: ``100`` → [99.5, 100.5).

    >>> number_range("1.5")
    (1.45, 1.55)
    """
    d = Decimal(text)
    if not d.is_finite():
        raise InvalidOperation(text)
    exp = d.as_tuple().exponent
    half = Decimal(5).scaleb(int(exp) - 1)
    lo, hi = float(d - half), float(d + half)
    if not (math.isfinite(lo) and math.isfinite(hi)) or abs(d) > Decimal("1e300"):
        raise InvalidOperation(text)
    return lo, hi


def _parse(value: str, name: str) -> tuple[str, float, float, float]:
    prefix, v = split_prefix(value)
    try:
        lo, hi = number_range(v)
    except (InvalidOperation, ValueError):
        raise InvalidSearch(f"parameter {name}: {value!r} is not a number",
                            expression=name) from None
    return prefix, lo, hi, abs((lo + hi) / 2) * 0.1


def predicate(idx, modifier: str | None, value: str, name: str):
    if modifier is not None:
        raise InvalidSearch(f"modifier :{modifier} is not valid for number parameter {name}",
                            expression=name)
    prefix, lo, hi, approx = _parse(value, name)
    return compare(idx.c.low, idx.c.high, prefix, lo, hi, approx)


def quantity_predicate(idx, modifier: str | None, value: str, name: str):
    if modifier is not None:
        raise InvalidSearch(f"modifier :{modifier} is not valid for quantity parameter {name}",
                            expression=name)
    number, _, rest = value.partition("|")
    prefix, lo, hi, approx = _parse(number, name)
    cond = compare(idx.c.low, idx.c.high, prefix, lo, hi, approx)
    if rest:
        system, code = split_pipe(rest)
        if system:  # bounded keys, as stored (fkj.search.keys)
            cond = and_(cond, idx.c.system == key(system))
        if code:
            cond = and_(cond, idx.c.code == key(code))
    return cond
