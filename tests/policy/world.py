"""A small municipality for the policy matrix: one home-care unit, one practitioner pair per
role (``<role>-0`` without, ``<role>-1`` with emergency grants on every patient), and one
patient per (care relation × block), each with a plain and a PSY-labelled Condition and an
Encounter pointing at both."""

from __future__ import annotations

from tests.policy.conftest import PSY, actor, put, sperring

ROLES = ("lege", "sykepleier", "helsefagarbeider", "fysioterapeut", "ergoterapeut",
         "psykolog", "saksbehandler", "leder")
RELATIONS = ("none", "careteam", "episode", "unit", "expired")
BLOCKS = ("none", "category", "unit", "person")
UNIT, OTHER = "hjem-sone-1", "legevakt"
CLINICAL_READERS = {"lege", "sykepleier", "fysioterapeut", "ergoterapeut", "psykolog"}
#: who may open a record by emergency access (health personnel with an HPR number)
BTG_ROLES = {"lege", "sykepleier", "helsefagarbeider", "fysioterapeut", "ergoterapeut",
             "psykolog"}


def prac_id(role: str, emergency: bool) -> str:
    return f"{role}-{int(emergency)}"


def hpr(role: str, emergency: bool) -> str:
    return f"9{ROLES.index(role):03d}{int(emergency)}"


def patient_id(rel: str, blk: str) -> str:
    return f"p-{rel}-{blk}"


def all_pracs() -> list[str]:
    return [prac_id(r, e) for r in ROLES for e in (False, True)]


def build(c) -> None:
    put(c, {"resourceType": "Organization", "id": UNIT, "name": "Hjemmetjenesten sone 1"})
    put(c, {"resourceType": "Organization", "id": OTHER, "name": "Legevakt"})
    for p in all_pracs():
        put(c, {"resourceType": "Practitioner", "id": p, "name": [{"family": p}]})
    members = [{"member": {"reference": f"Practitioner/{p}"}} for p in all_pracs()]
    for rel in RELATIONS:
        for blk in BLOCKS:
            pid = patient_id(rel, blk)
            put(c, {"resourceType": "Patient", "id": pid, "name": [{"family": pid}]})
            subj = {"reference": f"Patient/{pid}"}
            if rel == "careteam":
                put(c, {"resourceType": "CareTeam", "id": f"ct-{pid}", "status": "active",
                        "subject": subj, "period": {"start": "2020-01-01"},
                        "participant": members})
            elif rel == "episode":
                put(c, {"resourceType": "CareTeam", "id": f"ct-{pid}", "status": "inactive",
                        "subject": subj, "period": {"start": "2019-01-01", "end": "2020-01-01"},
                        "participant": members})
                put(c, {"resourceType": "EpisodeOfCare", "id": f"eoc-{pid}", "status": "active",
                        "patient": subj, "period": {"start": "2020-01-01"},
                        "managingOrganization": {"reference": f"Organization/{OTHER}"},
                        "team": [{"reference": f"CareTeam/ct-{pid}"}]})
            elif rel == "unit":
                put(c, {"resourceType": "ServiceRequest", "id": f"sr-{pid}", "status": "active",
                        "intent": "order", "subject": subj,
                        "occurrencePeriod": {"start": "2020-01-01"},
                        "performer": [{"reference": f"Organization/{UNIT}"}]})
            elif rel == "expired":
                put(c, {"resourceType": "CareTeam", "id": f"ct-{pid}", "status": "active",
                        "subject": subj, "period": {"start": "2019-01-01", "end": "2020-12-31"},
                        "participant": members})
                put(c, {"resourceType": "ServiceRequest", "id": f"sr-{pid}", "status": "active",
                        "intent": "order", "subject": subj,
                        "occurrencePeriod": {"start": "2019-01-01", "end": "2021-01-01"},
                        "performer": [{"reference": f"Organization/{UNIT}"}]})
            for sens in ("plain", "psy"):
                cond = {"resourceType": "Condition", "id": f"c-{pid}-{sens}", "subject": subj,
                        "code": {"text": f"diagnose {sens}"}}
                if sens == "psy":
                    cond["meta"] = {"security": [PSY]}
                put(c, cond)
            put(c, {"resourceType": "Encounter", "id": f"e-{pid}", "status": "finished",
                    "class": {"code": "HH"}, "subject": subj, "diagnosis": [
                        {"condition": {"reference": f"Condition/c-{pid}-plain"}},
                        {"condition": {"reference": f"Condition/c-{pid}-psy"}}]})
            if blk == "category":
                put(c, sperring(f"sp-{pid}", pid, securityLabel=[PSY]))
            elif blk == "unit":
                put(c, sperring(f"sp-{pid}", pid, actor=[actor(f"Organization/{UNIT}")]))
            elif blk == "person":
                put(c, sperring(f"sp-{pid}", pid,
                                actor=[actor(f"Practitioner/{p}") for p in all_pracs()]))


def related(rel: str, emergency: bool, role: str | None = None) -> bool:
    """A care relation, or an emergency grant (which only health personnel can open)."""
    return rel in ("careteam", "episode", "unit") or (
        emergency and (role is None or role in BTG_ROLES))


def patient_visible(rel: str, blk: str, emergency: bool, role: str | None = None) -> bool:
    return related(rel, emergency, role) and blk not in ("unit", "person")


def condition_visible(role: str, rel: str, blk: str, emergency: bool, sens: str) -> bool:
    if not patient_visible(rel, blk, emergency, role) or role not in CLINICAL_READERS:
        return False
    if sens == "psy":
        # the unit is not a home unit of PSY: only doctors see it, and not when blocked
        return role == "lege" and blk != "category"
    return True
