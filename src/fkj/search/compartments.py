"""Compartments (R4 CompartmentDefinitions): which resources belong to a patient's (or
encounter's, practitioner's …) compartment, through which search parameters."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from fkj.errors import InvalidSearch, NotFound

DATA = Path(__file__).resolve().parents[1] / "data" / "fhir" / "compartments.json"


@functools.cache
def definitions() -> dict[str, dict[str, list[str]]]:
    return json.loads(DATA.read_text())


def compartment_params(compartment: str, rtype: str) -> list[str]:
    """Search parameters of ``rtype`` that link it to a ``compartment`` owner ([] = not in it)."""
    return definitions().get(compartment, {}).get(rtype, [])


def member_types(compartment: str) -> list[str]:
    return sorted(definitions().get(compartment, {}))


def compartment_criteria(compartment: tuple[str, str], rtype: str) -> list[tuple[str, str]]:
    """Search criteria restricting ``rtype`` to the compartment ``(Type, id)``.

    Uses the pseudo-parameter ``_compartment`` the search engine understands (the
    compartment's parameters are OR-ed, which plain parameters cannot express).
    """
    ctype, cid = compartment
    if ctype not in definitions():
        raise NotFound(f"{ctype} is not a compartment")
    params = compartment_params(ctype, rtype)
    if not params:
        raise InvalidSearch(f"{rtype} is not in the {ctype} compartment")
    return [("_compartment", f"{ctype}/{cid}")]
