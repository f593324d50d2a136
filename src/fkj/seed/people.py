"""Synthetic Norwegian persons: names, fødselsnummer/D-nummer, addresses, dates.

Name, street and postal-code lists live in ``src/fkj/data/seed`` (compiled by the FKJ project,
see its README). All randomness comes from the ``random.Random`` passed in, so callers control
determinism.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources as _res
from random import Random

from fkj.model.identifiers import DNR_SYSTEM, FNR_SYSTEM, make_dnr, make_fnr
from fkj.model.kommuner import FYLKER, KOMMUNE_FYLKE, KOMMUNER

from .catalog import ADDRESS_OFFICIAL_EXT, MUNICIPALITY_CODE_SYSTEM, MUNICIPALITY_EXT

try:  # Europe/Oslo offsets (CET/CEST); fixed +01:00 if the tz database is missing
    from zoneinfo import ZoneInfo

    _OSLO = ZoneInfo("Europe/Oslo")
except Exception:  # noqa: BLE001
    from datetime import timezone

    _OSLO = timezone(timedelta(hours=1))


def _rows(name: str) -> list[dict[str, str]]:
    text = _res.files("fkj").joinpath("data", "seed", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@cache
def first_names() -> dict[tuple[str, str], tuple[str, ...]]:
    out: dict[tuple[str, str], list[str]] = {}
    for r in _rows("first-names.csv"):
        out.setdefault((r["sex"], r["generation"]), []).append(r["name"])
    return {k: tuple(v) for k, v in out.items()}


@cache
def surnames() -> tuple[str, ...]:
    return tuple(r["surname"] for r in _rows("surnames.csv"))


@cache
def streets() -> tuple[str, ...]:
    return tuple(r["street"] for r in _rows("streets.csv"))


@cache
def _postal() -> tuple[dict[str, tuple[tuple[str, str], ...]], dict[str, tuple[int, int]]]:
    by_kommune: dict[str, list[tuple[str, str]]] = {}
    for r in _rows("postnummer.csv"):
        by_kommune.setdefault(r["kommunenummer"], []).append((r["postnummer"], r["poststed"]))
    fylke = {r["fylkesnummer"]: (int(r["first_postnummer"]), int(r["last_postnummer"]))
             for r in _rows("postnummer-fylke-fallback.csv")}
    return {k: tuple(v) for k, v in by_kommune.items()}, fylke


# --------------------------------------------------------------------------- dates
def dt(d: date, hour: int = 12, minute: int = 0) -> str:
    """FHIR dateTime with the Europe/Oslo offset of that moment."""
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=_OSLO).isoformat()


def years_before(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def rand_date(rng: Random, start: date, end: date) -> date:
    """Uniform date in [start, end] (start if the range is empty)."""
    span = (end - start).days
    return start if span <= 0 else start + timedelta(days=rng.randint(0, span))


# --------------------------------------------------------------------------- municipality
@dataclass(frozen=True)
class Kommune:
    code: str          # the tenant as given (kommunenummer for the FKJ tenants)
    slug: str          # tenant made safe for ids
    name: str
    fylke: str | None
    digits: str        # 4 digits used to build HER-ids/HPR numbers

    @property
    def postal(self) -> tuple[tuple[str, str], ...]:
        table, fylke_ranges = _postal()
        if self.code in table:
            return table[self.code]
        lo, hi = fylke_ranges.get(self.code[:2], (150, 9999))
        base = lo + zlib.crc32(self.code.encode()) % max(1, hi - lo - 20)
        city = self.name.upper()
        return tuple((f"{base + i * 5:04d}", city) for i in range(4))


def kommune_for(tenant: str) -> Kommune:
    slug = re.sub(r"[^A-Za-z0-9.-]", "-", tenant)[:24] or "t"
    name = KOMMUNER.get(tenant, f"Kommune {tenant}")
    fnr = KOMMUNE_FYLKE.get(tenant)
    fylke = FYLKER.get(fnr) if fnr else None
    digits = tenant if (len(tenant) == 4 and tenant.isdigit()) else \
        f"{zlib.crc32(tenant.encode()) % 10000:04d}"
    return Kommune(tenant, slug, name, fylke, digits)


def address(rng: Random, k: Kommune, *, use: str | None = "home", line: str | None = None) -> dict:
    postnr, sted = rng.choice(k.postal)
    a: dict = {}
    if use == "home":
        a["extension"] = [{"url": ADDRESS_OFFICIAL_EXT, "valueBoolean": True}]
    if use:
        a["use"] = use
    a["type"] = "physical"
    a["line"] = [line or f"{rng.choice(streets())} {rng.randint(1, 120)}"]
    a["city"] = sted
    a["district"] = k.name
    if len(k.code) == 4 and k.code.isdigit():
        a["_district"] = {"extension": [{
            "url": MUNICIPALITY_EXT,
            "valueCoding": {"system": MUNICIPALITY_CODE_SYSTEM, "code": k.code,
                            "display": k.name}}]}
    if k.fylke:
        a["state"] = k.fylke
    a["postalCode"] = postnr
    a["country"] = "NO"
    return a


# --------------------------------------------------------------------------- persons
def human_name(rng: Random, sex: str, birth_year: int) -> dict:
    gen = "older" if birth_year < 1975 else "younger"
    given = [rng.choice(first_names()[(sex, gen)])]
    if rng.random() < 0.25:
        second = rng.choice(first_names()[(sex, gen)])
        if second != given[0]:
            given.append(second)
    family = rng.choice(surnames())
    return {"use": "official", "text": " ".join(given + [family]), "family": family,
            "given": given}


def phone(rng: Random) -> str:
    """A synthetic Norwegian mobile number (+47 4xx/9xx xx xxx)."""
    return f"+47 {rng.choice('49')}{rng.randint(0, 99):02d} {rng.randint(0, 99):02d} " \
           f"{rng.randint(0, 999):03d}"


class PersonNumbers:
    """Allocates unique synthetic fødselsnummer / D-nummer (month + 80) within one run."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def allocate(self, rng: Random, birth: date, sex: str, *, dnr: bool = False) -> str:
        lo, hi = (0, 500) if birth.year < 2000 else (500, 1000)
        want = 1 if sex == "male" else 0  # 9th digit: odd = male, even = female
        make = make_dnr if dnr else make_fnr
        for _ in range(2000):
            ind = rng.randrange(lo, hi)
            if ind % 2 != want:
                ind = ind + 1 if ind + 1 < hi else ind - 1
            value = make(birth, ind, synthetic=True)
            if value is not None and value not in self._used:
                self._used.add(value)
                return value
        raise RuntimeError(f"no free person number for {birth}")  # pragma: no cover

    @staticmethod
    def identifier(value: str, *, dnr: bool = False) -> dict:
        return {"use": "official", "system": DNR_SYSTEM if dnr else FNR_SYSTEM, "value": value}
