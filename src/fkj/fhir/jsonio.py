"""JSON in and out: strict parsing with size and depth limits, and FHIR time formats."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from fkj.errors import BadRequest, PayloadTooLarge

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_body(body: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """Parse a request body, refusing oversize, malformed and too deeply nested JSON."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes}")
    if not body.strip():
        raise BadRequest("request body is empty; a FHIR resource in JSON was expected")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e}") from None
    depth = json_depth(data, max_depth)
    if depth > max_depth:
        raise BadRequest(f"JSON nesting deeper than the limit of {max_depth} levels")
    return data


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of ``value``; stops counting once ``limit`` is exceeded."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        v, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values() if isinstance(x, (dict, list)))
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return deepest


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def instant(us: int) -> str:
    """FHIR instant for microseconds since the epoch, e.g. ``2026-11-22T07:31:14.694987Z``."""
    dt = datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{us % 1_000_000:06d}Z"


def http_date(us: int) -> str:
    dt = datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)
    return dt.strftime("%a, %d %b %Y %H:%M:%S GMT")


def parse_instant(value: str) -> int:
    """Parse a FHIR date/dateTime/instant (as in ``_since``) into microseconds since the epoch.

    A value without a time zone is taken as UTC.
    """
    v = value.strip().replace(" ", "+")
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    try:
        if len(v) == 4:
            dt = datetime(int(v), 1, 1, tzinfo=timezone.utc)
        elif len(v) == 7:
            dt = datetime(int(v[:4]), int(v[5:7]), 1, tzinfo=timezone.utc)
        else:
            dt = datetime.fromisoformat(v)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
    except ValueError:
        raise BadRequest(f"not a valid FHIR instant: {value!r}") from None
    return (dt - EPOCH) // timedelta(microseconds=1)
