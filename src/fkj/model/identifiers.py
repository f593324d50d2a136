"""Norwegian person and organisation identifiers (HL7 Norway no-basis 2.2.0 naming systems).

Rules for fødselsnummer (FNR) and D-nummer (DNR), from the reference table
``fodselsnummer-variants.csv`` (Skatteetaten; python-stdnum; NAV; NHN):

* 11 digits ``DDMMYY III K1 K2``. D-nummer: day + 40 (first digit 4-7).
* Synthetic/test numbers are accepted: month + 40 (H-nummer / NAV Dolly), month + 65 (NHN
  SyntPop reserved persons), month + 80 (Skatteetaten Test-Norge / Tenor). They are not real
  people; callers that must reject them in production can use :func:`person_number_variant`.
* After removing the offsets the date must be a real calendar date. The century encoded in
  the individual number is *not* enforced: the date is accepted if it exists in any of the
  centuries 1800, 1900 or 2000 (so 29.02.00 is valid - 2000 was a leap year).
* Control digits (mod 11): ``K1 = 11 - (3,7,6,1,8,9,4,5,2 · d1..d9) mod 11`` and
  ``K2 = 11 - (5,4,3,2,7,6,5,4,3,2 · d1..d9,K1) mod 11``; 11 → 0; 10 → the number is invalid.
* The 2032 rule (Skatteetaten, numbers issued from 1 January 2032, "systems must accept
  both"): the new control calculation accepts the remainders 0, 1, 2 and 3 instead of only 0.
  Implemented as: the weighted sum ``(3,7,6,1,8,9,4,5,2,1) · (d1..d9, K1)`` mod 11 must be in
  {0, 1, 2, 3} (remainder 0 is exactly the classic rule); K2 is unchanged and must be exact
  (``(5,4,3,2,7,6,5,4,3,2,1) · (d1..d9, K1, K2)`` mod 11 == 0). Because K2 stays exact and
  none of its weights is a multiple of 11, every single-digit change is still detected.
  Pass ``allow_2032=False`` to apply the classic single-check-digit rule only.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fkj.errors import Issue

__all__ = [
    "DNR_SYSTEM",
    "DUF_SYSTEM",
    "FHN_SYSTEM",
    "FNR_SYSTEM",
    "HERID_SYSTEM",
    "HNR_SYSTEM",
    "HPR_SYSTEM",
    "ORGNR_SYSTEM",
    "PERSON_IDENTIFIER_SYSTEMS",
    "PERSON_SYSTEMS",
    "PID_SYSTEMS",
    "RESH_SYSTEM",
    "check_person_number",
    "identifier_issues",
    "make_dnr",
    "make_fnr",
    "person_number_variant",
    "systems_of_kind",
]

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
FHN_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.3"
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
DUF_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.5"
#: H-nummer (virksomhetsinternt hjelpenummer): no-basis 2.2.0 fixes the slice's system to
#: the literal "HNR" (the number is local to its assigner)
HNR_SYSTEM = "HNR"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
RESH_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.102"
HERID_SYSTEM = "urn:oid:2.16.578.1.12.4.1.2"
FHN = FHN_SYSTEM
ORGNR = ORGNR_SYSTEM
RESH = RESH_SYSTEM
HERID = HERID_SYSTEM

PersonKind = Literal["fnr", "dnr", "fhn", "hnr", "duf"]

#: Every system URI that identifies a *person as a patient* (citizen), with its kind: the
#: OIDs of HL7 Norway no-basis 2.2.0 and their hl7.no NamingSystem aliases. The one list the
#: platform uses — validation (fnr/dnr control digits), the resolution of references by
#: identifier to the tenant's Patient (fkj.repository.patients), a citizen's own Patients
#: (the access policy) and the access log. HPR-nummer (4.4) identifies personnel and is
#: deliberately not here. Source: /work/shared/reference/no/identifier-systems.csv and the
#: no-basis NamingSystems (copied facts; the product does not read that directory).
PERSON_IDENTIFIER_SYSTEMS: dict[str, PersonKind] = {
    FNR_SYSTEM: "fnr",
    "http://hl7.no/fhir/NamingSystem/FNR": "fnr",
    DNR_SYSTEM: "dnr",
    "http://hl7.no/fhir/NamingSystem/DNR": "dnr",
    FHN_SYSTEM: "fhn",
    "http://hl7.no/fhir/NamingSystem/FHNR": "fhn",
    DUF_SYSTEM: "duf",
    "http://hl7.no/fhir/NamingSystem/DUFN": "duf",
    HNR_SYSTEM: "hnr",
}

#: the systems of a citizen's national identity number (the ``pid`` of an ID-porten login):
#: fødselsnummer and D-nummer
PID_SYSTEMS: frozenset[str] = frozenset(
    s for s, k in PERSON_IDENTIFIER_SYSTEMS.items() if k in ("fnr", "dnr"))

# system URI -> kind checked by identifier_issues (fødselsnummer and D-nummer: mod 11)
PERSON_SYSTEMS: dict[str, Literal["fnr", "dnr"]] = {
    s: k for s, k in PERSON_IDENTIFIER_SYSTEMS.items() if k in ("fnr", "dnr")}  # type: ignore[misc]


def systems_of_kind(kind: str) -> frozenset[str]:
    """Every system URI (OID and aliases) of one kind of person identifier.

    >>> sorted(systems_of_kind("dnr"))
    ['http://hl7.no/fhir/NamingSystem/DNR', 'urn:oid:2.16.578.1.12.4.1.4.2']
    """
    return frozenset(s for s, k in PERSON_IDENTIFIER_SYSTEMS.items() if k == kind)


_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
# month offset -> variant name
_MONTH_OFFSETS = {0: "", 40: "synthetic-h/dolly", 65: "synthetic-syntpop", 80: "synthetic-tenor"}


def _control_digits(d9: list[int]) -> tuple[int, int] | None:
    k1 = (11 - sum(w * d for w, d in zip(_W1, d9)) % 11) % 11
    if k1 == 10:
        return None
    k2 = (11 - sum(w * d for w, d in zip(_W2, d9 + [k1])) % 11) % 11
    if k2 == 10:
        return None
    return k1, k2


def _date_exists(day: int, month: int, yy: int) -> bool:
    for century in (1900, 2000, 1800):
        try:
            date(century + yy, month, day)
            return True
        except ValueError:
            continue
    return False


def person_number_variant(value: str, kind: Literal["fnr", "dnr"]) -> str | None:
    """'' for an ordinary number, 'synthetic-…' for test numbers, None if not valid."""
    if check_person_number(value, kind) is not None:
        return None
    return _MONTH_OFFSETS[_month_offset(int(value[2:4]))]


def _month_offset(mm: int) -> int:
    for off in (80, 65, 40, 0):
        if 1 <= mm - off <= 12:
            return off
    return -1


def check_person_number(value: str, kind: Literal["fnr", "dnr"], *,
                        allow_2032: bool = True) -> str | None:
    """None if *value* is a valid fødselsnummer (``kind="fnr"``) or D-nummer (``"dnr"``),
    else a short reason (English)."""
    if kind not in ("fnr", "dnr"):
        return f"unknown kind {kind!r}"
    if not isinstance(value, str):
        return "must be a string of 11 digits"
    if len(value) != 11 or not value.isascii() or not value.isdigit():
        return "must be exactly 11 digits"
    d = [int(c) for c in value]
    day, month, yy = int(value[0:2]), int(value[2:4]), int(value[4:6])
    if kind == "dnr":
        if not 41 <= day <= 71:
            return "a D-number must have day + 40 (first digit 4-7)"
        day -= 40
    elif day > 31:
        if 41 <= day <= 71:
            return "this is a D-number (day + 40), not a fødselsnummer"
        if day >= 80:
            return "this is an FH-number (first digit 8 or 9), not a fødselsnummer"
        return "invalid day of month"
    off = _month_offset(month)
    if off < 0:
        return "invalid month"
    month -= off
    if not _date_exists(day, month, yy):
        return "the date part is not a real calendar date"
    s1 = sum(w * x for w, x in zip(_W1, d[:9])) + d[9]
    r1 = s1 % 11
    if r1 != 0 and not (allow_2032 and r1 in (1, 2, 3)):
        return "wrong control digit (K1)"
    s2 = sum(w * x for w, x in zip(_W2, d[:10])) + d[10]
    if s2 % 11 != 0:
        return "wrong control digit (K2)"
    return None


def _make(day: int, month: int, year: int, individual: int) -> str | None:
    if not 0 <= individual <= 999:
        raise ValueError("individual number must be 0..999")
    base = f"{day:02d}{month:02d}{year % 100:02d}{individual:03d}"
    cd = _control_digits([int(c) for c in base])
    if cd is None:
        return None
    return f"{base}{cd[0]}{cd[1]}"


def make_fnr(birth_date: date, individual: int, synthetic: bool = True) -> str | None:
    """A fødselsnummer with classic control digits, or None when a control digit would be 10.

    ``synthetic=True`` (the default) adds 80 to the month (Skatteetaten Test-Norge / Tenor
    pattern), so the number cannot belong to a real person. *individual* is 0..999; the
    century convention of the individual number is not applied (callers choose it)."""
    month = birth_date.month + (80 if synthetic else 0)
    return _make(birth_date.day, month, birth_date.year, individual)


def make_dnr(birth_date: date, individual: int, synthetic: bool = True) -> str | None:
    """A D-nummer (day + 40) for *birth_date*, month + 80 when synthetic; None if K = 10."""
    month = birth_date.month + (80 if synthetic else 0)
    return _make(birth_date.day + 40, month, birth_date.year, individual)


# --------------------------------------------------------------------------------------------

_PERSON_RESOURCES = ("Patient", "Practitioner", "RelatedPerson", "Person")


def _check_identifier(ident: Any, loc: str, out: list[Issue]) -> None:
    if not isinstance(ident, dict):
        return
    kind = PERSON_SYSTEMS.get(ident.get("system"))  # type: ignore[arg-type]
    if kind is None:
        return
    value = ident.get("value")
    if value is None:
        return
    reason = check_person_number(value, kind)
    if reason is not None:
        label = "fødselsnummer" if kind == "fnr" else "D-nummer"
        out.append(Issue("error", "value", f"Invalid {label}: {reason}", [f"{loc}.value"]))


def _check_identifiers(value: Any, loc: str, out: list[Issue]) -> None:
    if isinstance(value, list):
        for i, ident in enumerate(value):
            _check_identifier(ident, f"{loc}[{i}]", out)
    else:
        _check_identifier(value, loc, out)


def identifier_issues(resource: dict) -> list[Issue]:
    """Report FNR/DNR identifiers with a wrong format, date or control digit.

    Looks at ``identifier`` of the resource itself (any type; e.g. Patient.identifier[1].value)
    and at ``Reference.identifier`` of its direct reference elements and of list elements
    (e.g. ``Encounter.subject.identifier.value``). Never raises."""
    out: list[Issue] = []
    if not isinstance(resource, dict):
        return out
    rtype = resource.get("resourceType")
    root = rtype if isinstance(rtype, str) else "Resource"
    try:
        _check_identifiers(resource.get("identifier"), f"{root}.identifier", out)
        for key, value in resource.items():
            if key == "identifier":
                continue
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                # Reference.identifier is a single Identifier (0..1)
                if isinstance(item, dict) and isinstance(item.get("identifier"), dict):
                    loc = f"{root}.{key}[{i}]" if isinstance(value, list) else f"{root}.{key}"
                    _check_identifier(item["identifier"], f"{loc}.identifier", out)
    except Exception:  # noqa: BLE001, S110 - never raise on odd input
        pass
    return out
