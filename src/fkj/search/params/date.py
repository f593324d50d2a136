"""date: a FHIR date/dateTime/instant search value with a prefix, compared as ranges."""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_

from fkj.errors import InvalidSearch
from fkj.search.params.ranges import compare, index_bound
from fkj.search.parse import split_prefix

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def date_range(value: str) -> tuple[float, float]:
    """Half-open range ``[low, high)`` in epoch seconds implied by a date's precision.

    A dateTime without a time zone is taken as UTC.

    >>> date_range("2024")[1] - date_range("2024")[0] == 366 * 86400
    True
    """
    m = _DATE.match(value.strip().replace(" ", "+"))
    if not m:
        raise ValueError(value)
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    year = int(y)
    if mo is None:
        start = datetime(year, 1, 1, tzinfo=timezone.utc)
        return start.timestamp(), datetime(year + 1, 1, 1, tzinfo=timezone.utc).timestamp()
    month = int(mo)
    if d is None:
        start = datetime(year, month, 1, tzinfo=timezone.utc)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=timezone.utc)
        return start.timestamp(), end.timestamp()
    day = int(d)
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise ValueError(value)
    tzinfo = timezone.utc
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    if hh is None:
        start = datetime(year, month, day, tzinfo=timezone.utc)
        return start.timestamp(), start.timestamp() + 86400
    start = datetime(year, month, day, int(hh), int(mi), int(ss or 0), tzinfo=tzinfo)
    if ss is None:
        width = 60.0
    elif frac:
        width = 10.0 ** -(len(frac) - 1)
    else:
        width = 1.0
    low = start.timestamp() + (float(frac) if frac else 0.0)
    return low, low + width


def predicate(low_col, high_col, modifier: str | None, value: str, name: str,
              *, bounded: bool = False):
    """``bounded``: also state the range on ``low`` or ``high`` the comparison implies
    (:func:`fkj.search.params.ranges.index_bound`), so an index range scan finds the rows."""
    if modifier is not None:
        raise InvalidSearch(f"modifier :{modifier} is not valid for date parameter {name}",
                            expression=name)
    prefix, v = split_prefix(value)
    try:
        lo, hi = date_range(v)
    except (ValueError, OverflowError):
        raise InvalidSearch(f"parameter {name}: {value!r} is not a valid date, dateTime or "
                            "instant", expression=name) from None
    approx = abs(time.time() - lo) * 0.1
    cond = compare(low_col, high_col, prefix, lo, hi, approx)
    if bounded:
        extra = index_bound(low_col, high_col, prefix, lo, hi, approx)
        if extra is not None:
            cond = and_(cond, extra)
    return cond
