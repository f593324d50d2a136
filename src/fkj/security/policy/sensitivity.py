"""Sensitive categories: resources whose ``meta.security`` carries a restricted v3-ActCode label
(PSY, SUD, ETH, HIV …) are visible only to the roles and units of this table.

A label's rule gives
* ``anywhere`` — roles that see the label in any unit (the patient's doctor must know
  psychiatric diagnoses and LAR medication for safe treatment);
* ``home_roles`` — roles that see it when working in one of the label's *home units* (the
  units that record such data: psykisk helse og rus).

Home units are configured per tenant in the tenant settings
(``{"policy": {"home_units": {"PSY": ["Organization/x", …], …}}}``); without that, units
whose Organization id matches one of ``DEFAULT_HOME_UNIT_PATTERNS`` (the seed's
``…-psykisk-helse-rus`` units) are home units of every label.

A *category block* (sperring by ``provision.securityLabel``) hides the label's resources
from everyone except staff of the home units ("not shared beyond the unit that recorded
them"). Emergency access does not lift the sensitivity rule (it lifts only the care
relation requirement).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


@dataclass(frozen=True)
class LabelRule:
    anywhere: frozenset[str]
    home_roles: frozenset[str]


_MENTAL = LabelRule(frozenset({"lege"}), frozenset({"lege", "psykolog", "sykepleier"}))
_INFECT = LabelRule(frozenset({"lege"}), frozenset({"lege"}))

#: restricted v3-ActCode labels → who may see them (configurable table)
SENSITIVE_LABELS: dict[str, LabelRule] = {
    "PSY": _MENTAL,        # psychiatry
    "PSYTHPN": _MENTAL,    # psychotherapy note
    "SUD": _MENTAL,        # substance use disorder
    "ETH": _MENTAL,        # substance abuse (ethanol/drugs)
    "ALC": _MENTAL,        # alcohol abuse
    "DRGIS": _MENTAL,      # drug abuse
    "HIV": _INFECT,
    "STD": _INFECT,
    "SEX": _INFECT,        # sexuality / reproductive health
    "SDV": _MENTAL,        # sexual assault, abuse or domestic violence
}

DEFAULT_HOME_UNIT_PATTERNS = ("*psykisk-helse*", "*psykisk*rus*")


def home_units(tenant_config: dict, label: str, unit: str | None) -> bool:
    """Whether ``unit`` (``Organization/x``) is a home unit of ``label``."""
    if not unit:
        return False
    configured = (tenant_config.get("policy") or {}).get("home_units")
    if isinstance(configured, dict):
        return unit in (configured.get(label) or [])
    oid = unit.split("/", 1)[-1]
    return any(fnmatch.fnmatch(oid, p) for p in DEFAULT_HOME_UNIT_PATTERNS)


def label_access(tenant_config: dict, roles: frozenset[str], unit: str | None
                 ) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(hidden labels, labels seen only through ``anywhere`` roles, labels seen as home unit)."""
    hidden, anywhere, home = set(), set(), set()
    for label, rule in SENSITIVE_LABELS.items():
        if roles & rule.home_roles and home_units(tenant_config, label, unit):
            home.add(label)
        elif roles & rule.anywhere:
            anywhere.add(label)
        else:
            hidden.add(label)
    return frozenset(hidden), frozenset(anywhere), frozenset(home)


def restricted_labels(resource: dict) -> set[str]:
    out = set()
    for s in (resource.get("meta") or {}).get("security") or []:
        if isinstance(s, dict) and s.get("system") == ACTCODE and s.get("code") in SENSITIVE_LABELS:
            out.add(s["code"])
    return out


def labels(resource: dict) -> set[tuple[str | None, str | None]]:
    return {(s.get("system"), s.get("code")) for s in (resource.get("meta") or {}).get("security") or []
            if isinstance(s, dict)}
