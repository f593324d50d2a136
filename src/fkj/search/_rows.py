"""Turn FHIR element values into search-index rows (formats: see ``fkj.search.extract``).

Row builders have the signature ``build(param, value, out)`` and append tuples to ``out``.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

LOW = -1e15   # open start (Period without start, Range without low, "<" comparator)
HIGH = 1e15   # open end (Period without end, Range without high, ">" comparator)
_EPOCH = 719163  # date(1970, 1, 1).toordinal()
_COMBINING = unicodedata.combining
_NFKD = unicodedata.normalize

Builder = Callable[[str, Any, list], None]


# --------------------------------------------------------------------------- strings
_NORM_CACHE: dict[str, str] = {}


def norm(s: str) -> str:
    """Casefold and strip accents (NFKD, combining marks dropped). ø/æ have no decomposition
    and stay as they are; å becomes a, é becomes e."""
    if s.isascii():
        return s.lower()
    r = _NORM_CACHE.get(s)
    if r is None:
        r = "".join(c for c in _NFKD("NFKD", s.casefold()) if not _COMBINING(c))
        if len(_NORM_CACHE) > 65536:
            _NORM_CACHE.clear()
        _NORM_CACHE[s] = r
    return r


def b_str(p: str, v: Any, out: list) -> None:
    if type(v) is str:
        if v:
            out.append((p, norm(v), v))
    elif type(v) is dict:
        if "family" in v or "given" in v or "prefix" in v or "suffix" in v:
            b_humanname(p, v, out)
        elif "line" in v or "city" in v or "postalCode" in v or "country" in v \
                or "district" in v or "state" in v:
            b_address(p, v, out)
        elif type(v.get("text")) is str:
            b_str(p, v["text"], out)


def _parts(p: str, v: dict, keys: tuple[str, ...], out: list) -> None:
    for k in keys:
        x = v.get(k)
        if x is None:
            continue
        if type(x) is list:
            for s in x:
                if type(s) is str and s:
                    out.append((p, norm(s), s))
        elif type(x) is str and x:
            out.append((p, norm(x), x))


_NAME_KEYS = ("family", "given", "prefix", "suffix", "text")
_ADDR_KEYS = ("line", "city", "district", "state", "postalCode", "country", "text")


def b_humanname(p: str, v: Any, out: list) -> None:
    if type(v) is dict:
        _parts(p, v, _NAME_KEYS, out)


def b_address(p: str, v: Any, out: list) -> None:
    if type(v) is dict:
        _parts(p, v, _ADDR_KEYS, out)


# --------------------------------------------------------------------------- tokens
def _n(s: Any) -> str | None:
    return norm(s) if type(s) is str and s else None


def b_coding(p: str, v: Any, out: list) -> None:
    if type(v) is dict:
        s, c, d = v.get("system"), v.get("code"), v.get("display")
        if s is not None or c is not None or d is not None:
            out.append((p, s, c, _n(d)))


def b_cc(p: str, v: Any, out: list) -> None:
    if type(v) is not dict:
        return
    for c in v.get("coding") or ():
        if type(c) is dict:
            s, k, d = c.get("system"), c.get("code"), c.get("display")
            if s is not None or k is not None or d is not None:
                out.append((p, s, k, norm(d) if type(d) is str and d else None))
    t = v.get("text")
    if type(t) is str and t:
        out.append((p, None, None, norm(t)))


def b_ident(p: str, v: Any, out: list) -> None:
    if type(v) is not dict:
        return
    s, val, typ = v.get("system"), v.get("value"), v.get("type")
    tt = None
    if type(typ) is dict:
        tt = _n(typ.get("text"))
    if s is not None or val is not None:
        out.append((p, s, val, tt))
    if type(typ) is dict and val is not None:
        ot = p + ":of-type"
        for c in typ.get("coding") or ():
            if type(c) is dict and c.get("code") is not None:
                out.append((ot, f"{c.get('system') or ''}|{c['code']}", val, None))


def b_contact(p: str, v: Any, out: list) -> None:
    if type(v) is dict:
        val = v.get("value")
        if val is not None:
            out.append((p, None, val, None))


def b_code(p: str, v: Any, out: list) -> None:
    t = type(v)
    if t is str:
        out.append((p, None, v, None))
    elif t is bool:
        out.append((p, None, "true" if v else "false", None))
    elif t is int or t is float or isinstance(v, Decimal):
        out.append((p, None, str(v), None))
    elif t is dict:
        b_token_any(p, v, out)


_CODE_BUILDERS: dict[str, Builder] = {}


def b_code_in(system: str) -> Builder:
    """Builder for a ``code`` element whose binding implies ``system``
    (fkj.search.code_systems): ``(param, system, code, None)``."""
    b = _CODE_BUILDERS.get(system)
    if b is None:
        def b(p: str, v: Any, out: list, _s: str = system) -> None:
            if type(v) is str:
                out.append((p, _s, v, None))
            else:
                b_code(p, v, out)
        _CODE_BUILDERS[system] = b
    return b


_CONTACT_SYSTEMS = frozenset(("phone", "fax", "email", "pager", "url", "sms", "other"))


def b_token_any(p: str, v: Any, out: list) -> None:
    if type(v) is not dict:
        b_code(p, v, out)
    elif "coding" in v or ("text" in v and "value" not in v and "code" not in v):
        b_cc(p, v, out)
    elif "value" in v:
        if v.get("system") in _CONTACT_SYSTEMS or "rank" in v:
            b_contact(p, v, out)
        else:
            b_ident(p, v, out)
    elif "code" in v or "system" in v:
        b_coding(p, v, out)


# --------------------------------------------------------------------------- references
#: what fits the reference table's target_type / target_id (a resource type, an id)
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}\Z")
_ID = re.compile(r"[A-Za-z0-9.-]{1,64}\Z")
_REL = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9.-]{1,64})(?:/_history/[A-Za-z0-9.-]{1,64})?\Z")
_ABS = re.compile(r"https?://\S*?/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9.-]{1,64})"
                  r"(?:/_history/[A-Za-z0-9.-]{1,64})?\Z")


def b_ref(p: str, v: Any, out: list) -> None:
    if type(v) is str:
        b_canon(p, v, out)
        return
    if type(v) is not dict:
        return
    if "resourceType" in v:
        b_resource(p, v, out)
        return
    r = v.get("reference")
    ident = v.get("identifier")
    isys = ival = None
    if type(ident) is dict:
        isys, ival = ident.get("system"), ident.get("value")
    if type(r) is str and r and r[0] != "#":
        m = _REL.match(r)
        if m:
            out.append((p, m.group(1), m.group(2), None, isys, ival))
            return
        m = _ABS.match(r)
        if m:
            out.append((p, m.group(1), m.group(2), r, isys, ival))
        else:
            out.append((p, None, None, r, isys, ival))
    elif isys is not None or ival is not None:
        t = v.get("type")  # a resource type; anything else (an absolute URL) is not stored
        out.append((p, t if type(t) is str and _TYPE.match(t) else None, None, None, isys,
                    ival))


def b_canon(p: str, v: Any, out: list) -> None:
    """canonical / uri used as a reference: url row (plus the version-less url)."""
    if type(v) is not str or not v:
        return
    out.append((p, None, None, v, None, None))
    if "|" in v:
        out.append((p, None, None, v.split("|", 1)[0], None, None))


def b_resource(p: str, v: Any, out: list) -> None:
    if type(v) is dict and type(v.get("resourceType")) is str and type(v.get("id")) is str \
            and _TYPE.match(v["resourceType"]) and _ID.match(v["id"]):
        out.append((p, v["resourceType"], v["id"], None, None, None))


def b_uri(p: str, v: Any, out: list) -> None:
    if type(v) is str and v:
        out.append((p, v))


# --------------------------------------------------------------------------- dates
_DT = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
                 r"(Z|[+-]\d{2}:\d{2})?)?)?)?\Z")


def _days(y: int, m: int, d: int) -> int:
    return date(y, m, d).toordinal() - _EPOCH


def date_range(s: Any) -> tuple[float, float] | None:
    """[low, high) in epoch seconds UTC for a date/dateTime/instant string, by precision.
    A dateTime without timezone (and any partial date) is taken as UTC."""
    if type(s) is not str:
        return None
    m = _DT.match(s)
    if m is None:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        y = int(y)
        if mo is None:
            return _days(y, 1, 1) * 86400.0, _days(y + 1, 1, 1) * 86400.0
        mo = int(mo)
        if d is None:
            return (_days(y, mo, 1) * 86400.0,
                    _days(y + (mo == 12), mo % 12 + 1, 1) * 86400.0)
        day = _days(y, mo, int(d)) * 86400
        if hh is None:
            return float(day), float(day + 86400)
        h, mn = int(hh), int(mi)
        if h > 23 or mn > 59:
            return None
        t = day + h * 3600 + mn * 60
        if tz and tz != "Z":
            off = int(tz[1:3]) * 3600 + int(tz[4:6]) * 60
            t = t - off if tz[0] == "+" else t + off
        if ss is None:
            return float(t), float(t + 60)
        t += int(ss)
        if frac:
            n = len(frac)
            lo = t + int(frac) / 10 ** n
            return lo, lo + 10.0 ** -n
        return float(t), float(t + 1)
    except ValueError:
        return None


def b_date(p: str, v: Any, out: list) -> None:
    r = date_range(v)
    if r is not None:
        out.append((p, r[0], r[1]))
    elif type(v) is dict:
        if "start" in v or "end" in v:
            b_period(p, v, out)
        elif "event" in v:
            b_timing(p, v, out)


def b_period(p: str, v: Any, out: list) -> None:
    if type(v) is not dict:
        return
    s, e = v.get("start"), v.get("end")
    lo = date_range(s) if s is not None else None
    hi = date_range(e) if e is not None else None
    if lo is None and hi is None:
        return
    if lo is not None and hi is not None and lo[0] > hi[1]:
        # an end before the start (invalid, per-1; or a date end against a start late in the
        # day in another time zone): the range covering both, so that low <= high always
        # holds (the search's index bounds rely on it, fkj.search.params.ranges.index_bound)
        out.append((p, min(lo[0], hi[0]), max(lo[1], hi[1])))
        return
    out.append((p, lo[0] if lo else LOW, hi[1] if hi else HIGH))


def b_timing(p: str, v: Any, out: list) -> None:
    if type(v) is dict:
        for e in v.get("event") or ():
            r = date_range(e)
            if r is not None:
                out.append((p, r[0], r[1]))


# --------------------------------------------------------------------------- numbers
def num_range(v: Any) -> tuple[float, float] | None:
    """Implicit precision range: 100 → [99.5, 100.5), 1.50 → [1.495, 1.505).
    JSON numbers arrive as int/float, so trailing zeros of decimals are lost (1.50 → 1.5)."""
    t = type(v)
    if t is int:
        return v - 0.5, v + 0.5
    if t is bool or v is None:
        return None
    try:
        d = Decimal(repr(v)) if t is float else Decimal(v)
    except (InvalidOperation, TypeError, ValueError):
        return None
    if not d.is_finite():
        return None
    e = d.as_tuple().exponent
    half = 0.5 * 10.0 ** e
    f = float(d)
    return f - half, f + half


def b_num(p: str, v: Any, out: list) -> None:
    r = num_range(v)
    if r is not None:
        out.append((p, r[0], r[1]))


def b_qty(p: str, v: Any, out: list) -> None:
    """(param, system, code, low, high); code = Quantity.code, else unit. When both code and a
    different unit exist, an extra row (param, None, unit, low, high) lets ``||unit`` match."""
    if type(v) is not dict:
        return
    if "currency" in v:
        b_money(p, v, out)
        return
    if "low" in v or "high" in v:
        b_range(p, v, out)
        return
    r = num_range(v.get("value"))
    if r is None:
        return
    lo, hi = r
    cmp = v.get("comparator")
    if cmp in ("<", "<="):
        lo = LOW
    elif cmp in (">", ">="):
        hi = HIGH
    code, unit = v.get("code"), v.get("unit")
    if code is not None:
        out.append((p, v.get("system"), code, lo, hi))
        if unit is not None and unit != code:
            out.append((p, None, unit, lo, hi))
    else:
        out.append((p, v.get("system"), unit, lo, hi))


def b_money(p: str, v: Any, out: list) -> None:
    if type(v) is dict:
        r = num_range(v.get("value"))
        if r is not None:
            out.append((p, "urn:iso:std:iso:4217", v.get("currency"), r[0], r[1]))


def b_range(p: str, v: Any, out: list) -> None:
    if type(v) is not dict:
        return
    lo_q, hi_q = v.get("low"), v.get("high")
    lo = num_range(lo_q.get("value")) if type(lo_q) is dict else None
    hi = num_range(hi_q.get("value")) if type(hi_q) is dict else None
    if lo is None and hi is None:
        return
    q = lo_q if lo is not None else hi_q
    code = q.get("code")
    out.append((p, q.get("system"), code if code is not None else q.get("unit"),
                lo[0] if lo else LOW, hi[1] if hi else HIGH))


def b_skip(p: str, v: Any, out: list) -> None:
    return None


# --------------------------------------------------------------------------- selection
_QTY_TYPES = {"Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity",
              "MoneyQuantity"}

BY_TYPE: dict[str, dict[str, Builder]] = {
    "string": {"HumanName": b_humanname, "Address": b_address},
    "token": {"CodeableConcept": b_cc, "Coding": b_coding, "Identifier": b_ident,
              "ContactPoint": b_contact},
    "reference": {"Reference": b_ref, "canonical": b_canon, "uri": b_canon, "url": b_canon,
                  "Resource": b_resource},
    "date": {"Period": b_period, "Timing": b_timing, "date": b_date, "dateTime": b_date,
             "instant": b_date},
    "number": {},
    "quantity": {"Money": b_money, "Range": b_range, "SampledData": b_skip,
                 **{t: b_qty for t in _QTY_TYPES}},
    "uri": {},
}
GENERIC: dict[str, Builder] = {
    "string": b_str, "token": b_token_any, "reference": b_ref, "date": b_date,
    "number": b_num, "quantity": b_qty, "uri": b_uri,
}


def builder_for(search_type: str, ftype: str | None, kind: str | None = None) -> Builder:
    if search_type not in GENERIC:
        return b_skip
    if ftype is not None:
        b = BY_TYPE[search_type].get(ftype)
        if b is not None:
            return b
        if search_type == "reference" and kind == "resource":
            return b_resource
        if search_type == "token" and kind == "primitive-type":
            return b_code
    return GENERIC[search_type]
