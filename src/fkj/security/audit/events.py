"""AuditEvent resources following IHE BALP (Basic Audit Log Patterns), FHIR R4.

One event per interaction, whatever its outcome (denials included)::

    type      audit-event-type#rest            (RESTful Operation)
    subtype   restful-interaction#<interaction> (read, vread, search-type, create, update,
                                                 delete, history, operation ...)
    action    C R U D E
    recorded  the time of the access (µs precision)
    outcome   0 success, 4 minor failure (e.g. denied), 8 serious failure, 12 major failure
    purposeOfEvent  v3-ActReason (TREAT; ETREAT and/or BTG for emergency access)
    agent     user   (v3-ParticipationType#IRCP; who.identifier = HPR-nummer or fødselsnummer,
                      role = the principal's roles, location = unit), requestor
              client (DCM#110153 Source Role ID; who.identifier = SMART client_id); requestor
                      when there is no user (system / backend-service access)
              operator (v3-ParticipationType#RESP; who.identifier system urn:fkj:operator =
                      user@host) beside the client of a command-line tool
                      (fkj.security.audit.operator); not the requestor
              server (DCM#110152 Destination Role ID; the platform)
    source    observer = the platform, type security-source-type#4 (Application Server)
    entity    patient  (audit-entity-type#1 Person, object-role#1 Patient, what = Patient/x)
              data     (audit-entity-type#2 System Object, object-role#4 Domain Resource)
              query    (object-role#24 Query, the search as base64) for searches

The single patient, when there is exactly one, is also given in the HL7 Norway extension
``auditevent-patient-extension`` (the no-domain-Trustframework-Auditevent profile). The events
claim no ``meta.profile``: they follow BALP's structure but are not validated against it.
"""

from __future__ import annotations

import base64
import json
import os
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from fkj.model.identifiers import FNR_SYSTEM, HPR_SYSTEM
from fkj.types import Principal

OBSERVER = "FKJ-plattformen"

ACTIONS = frozenset("CRUDE")
OUTCOMES = frozenset({"0", "4", "8", "12"})
#: http://hl7.org/fhir/restful-interaction (R4)
INTERACTIONS = frozenset({
    "read", "vread", "update", "patch", "delete", "history", "history-instance",
    "history-type", "history-system", "create", "search", "search-type", "search-system",
    "capabilities", "transaction", "batch", "operation"})

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PURPOSES = {
    "TREAT": "treatment",
    "ETREAT": "Emergency Treatment",
    "BTG": "break the glass",
    "COC": "coordination of care",
    "HOPERAT": "healthcare operations",
    "HPAYMT": "healthcare payment",
    "PATRQT": "patient requested",
    "PUBHLTH": "public health",
    "HRESCH": "healthcare research",
    "SYSADMIN": "system administration",
    "HSYSADMIN": "health system administration",
    "HQUALIMP": "health quality improvement",
    "LEGAL": "legal",
}
CLIENT_ID_SYSTEM = "urn:ietf:params:oauth:client-id"
#: an operator running a command-line tool (``user@host``; fkj.security.audit.operator)
OPERATOR_SYSTEM = "urn:fkj:operator"
NO_PATIENT_EXTENSION = "http://hl7.no/fhir/StructureDefinition/auditevent-patient-extension"

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_USER_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                          "code": "IRCP", "display": "information recipient"}]}
_CLIENT_TYPE = {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]}
_OPERATOR_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                              "code": "RESP", "display": "responsible party"}]}
_SERVER_TYPE = {"coding": [{"system": _DCM, "code": "110152", "display": "Destination Role ID"}]}
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_PATIENT_ENTITY = ({"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
                   {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"})
_DATA_ENTITY = ({"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"})
_QUERY_ENTITY = ({"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                 {"system": _OBJECT_ROLE, "code": "24", "display": "Query"})


def iso_instant(us: int) -> str:
    """``2024-03-19T06:45:00.123456Z`` for microseconds since the epoch."""
    global _SECOND
    sec = us // 1_000_000
    held = _SECOND
    if held[0] != sec:
        held = _SECOND = (sec, datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{held[1]}.{us % 1_000_000:06d}Z"


#: the last second formatted by :func:`iso_instant` (records come many per second)
_SECOND: tuple[int, str] = (-1, "")


def parse_instant(value: str) -> int:
    """Microseconds since the epoch for a FHIR instant."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def purpose_codes(purpose: str | None) -> list[str]:
    """``"ETREAT BTG"`` / ``"ETREAT,BTG"`` → ``["ETREAT", "BTG"]`` (order kept, no duplicates)."""
    out: list[str] = []
    for code in (purpose or "").replace(",", " ").split():
        if code not in out:
            out.append(code)
    return out


def _purpose_concept(code: str) -> dict:
    coding: dict[str, Any] = {"system": ACT_REASON, "code": code}
    if code in PURPOSES:
        coding["display"] = PURPOSES[code]
    return {"coding": [coding]}


def _user_agent(p: Principal, purposes: list[dict], requestor: bool) -> dict | None:
    if p.kind == "practitioner" or (p.hpr_number and p.kind != "citizen"):
        ident = ({"system": HPR_SYSTEM, "value": p.hpr_number} if p.hpr_number
                 else {"value": p.subject})
    elif p.kind == "citizen":
        ident = {"system": FNR_SYSTEM, "value": p.pid} if p.pid else {"value": p.subject}
    else:
        return None
    who: dict[str, Any] = {"identifier": ident, "display": p.display}
    if p.fhir_user:
        who["reference"] = p.fhir_user
    agent: dict[str, Any] = {"type": _USER_TYPE, "who": who, "requestor": requestor}
    if p.subject and p.subject != ident.get("value"):
        agent["altId"] = p.subject
    if p.roles:
        agent["role"] = [{"text": r} for r in sorted(p.roles)]
    if p.unit:
        agent["location"] = {"display": p.unit}
    if purposes:
        agent["purposeOfUse"] = purposes
    return agent


def check_event(action: str, subtype: str, outcome: str) -> None:
    """Raise ``ValueError`` unless ``action``, ``subtype`` (a FHIR interaction or an
    ``$operation``) and ``outcome`` can make an AuditEvent."""
    if action not in ACTIONS or len(action) != 1:
        raise ValueError(f"AuditEvent.action must be one of C R U D E, got {action!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"AuditEvent.outcome must be one of 0 4 8 12, got {outcome!r}")
    if not subtype.startswith("$") and subtype not in INTERACTIONS:
        raise ValueError(f"unknown FHIR interaction {subtype!r}")


def build_audit_event(principal: Principal, *, action: str, subtype: str,
                      resources: list[str], patients: list[str], outcome: str,
                      description: str | None = None, purpose: str | None = None,
                      query: str | None = None, recorded_us: int | None = None,
                      observer: str = OBSERVER) -> dict:
    """An AuditEvent (FHIR R4 JSON) for one interaction made on behalf of ``principal``.

    ``resources`` and ``patients`` are relative references (``Observation/1``,
    ``Patient/7``); ``purpose`` overrides ``principal.purpose_of_use`` (several codes may be
    given space-separated, e.g. ``"ETREAT BTG"``); ``subtype`` is a FHIR interaction or an
    operation name (``$everything``); ``description`` goes to ``outcomeDesc`` (e.g. why
    access was denied, or the break-glass reason); ``query`` (searches) is recorded as a
    query entity.
    """
    check_event(action, subtype, outcome)
    if subtype.startswith("$"):
        subtypes = [{"system": "http://hl7.org/fhir/restful-interaction", "code": "operation",
                     "display": "operation"}, {"code": subtype, "display": subtype}]
    else:
        subtypes = [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype,
                     "display": subtype}]
    recorded_us = recorded_us if recorded_us is not None else _now_us()
    purposes, agents, source = _principal_parts(principal, purpose or principal.purpose_of_use,
                                                observer)

    entities: list[dict] = []
    seen_patients: list[str] = []
    for ref in patients:
        if ref and ref not in seen_patients:
            seen_patients.append(ref)
            entities.append(_entity(ref, _PATIENT_ENTITY))
    seen: set[str] = set()
    for ref in resources:
        if ref and ref not in seen:
            seen.add(ref)
            entities.append(_entity(ref, _DATA_ENTITY))
    if query:
        entities.append({"type": _QUERY_ENTITY[0], "role": {**_QUERY_ENTITY[1]},
                         "query": base64.b64encode(
                             query.encode("utf-8", "backslashreplace")).decode("ascii")})

    event: dict[str, Any] = {"resourceType": "AuditEvent", "id": new_id()}
    if len(seen_patients) == 1:
        event["extension"] = [{"url": NO_PATIENT_EXTENSION,
                               "valueReference": {"reference": seen_patients[0]}}]
    event.update({
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                 "code": "rest", "display": "RESTful Operation"},
        "subtype": subtypes,
        "action": action,
        "recorded": iso_instant(recorded_us),
        "outcome": outcome,
    })
    if description:
        event["outcomeDesc"] = description
    if purposes:
        event["purposeOfEvent"] = purposes
    event["agent"] = agents
    event["source"] = source
    if entities:
        event["entity"] = entities
    return event


def _principal_parts(principal: Principal, purpose: str | None, observer: str
                     ) -> tuple[list, list, dict]:
    """The parts of an event that depend on who asks: purposes of use, agents, source."""
    purposes = [_purpose_concept(c) for c in purpose_codes(purpose)]
    user = _user_agent(principal, purposes, requestor=True)
    agents = [user] if user else []
    client_id = principal.client_id or (principal.subject if not user else None)
    if client_id:
        client: dict[str, Any] = {
            "type": _CLIENT_TYPE,
            "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": client_id},
                    "display": client_id},
            "requestor": user is None}
        if user is None and purposes:
            client["purposeOfUse"] = purposes
        if user is None and principal.organisation:
            client["location"] = {"display": principal.organisation}
        agents.append(client)
    if user is None and principal.kind == "system" and principal.client_id \
            and principal.subject and principal.subject != principal.client_id:
        # a command-line tool run by an operator (fkj.security.audit.operator): the tool
        # (the system principal) is the requestor; the person who ran it is named too
        agents.append({"type": _OPERATOR_TYPE,
                       "who": {"identifier": {"system": OPERATOR_SYSTEM,
                                              "value": principal.subject},
                               "display": principal.subject},
                       "requestor": False})
    agents.append({"type": _SERVER_TYPE, "who": {"display": observer}, "requestor": False})
    source = {
        "site": f"{observer}/{principal.tenant}" if principal.tenant else observer,
        "observer": {"display": observer},
        "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                  "code": "4", "display": "Application Server"}]}
    return purposes, agents, source


def add_compact_entities(event: dict, resources: list[str]) -> None:
    """One entity per resource type, listing the ids in a detail (a searchset of 1,000
    entries costs ~40 bytes per resource instead of ~250)."""
    by_type: dict[str, list[str]] = {}
    absolute: list[str] = []
    for ref in dict.fromkeys(resources):
        if "://" in ref:  # an item of another server (a national service): one entity each
            absolute.append(ref)
            continue
        t, _, rest = ref.partition("/")
        by_type.setdefault(t, []).append(rest)
    entities = event.setdefault("entity", [])
    insert_at = next((i for i, e in enumerate(entities) if "query" in e), len(entities))
    for ref in absolute:
        entities.insert(insert_at, _entity(ref, _DATA_ENTITY))
        insert_at += 1
    for t, ids in by_type.items():
        entities.insert(insert_at, {
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                     "code": "2", "display": "System Object"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                     "code": "4", "display": "Domain Resource"},
            "name": t, "description": f"{len(ids)} {t} resources",
            "detail": [{"type": "ids", "valueString": " ".join(ids)}]})
        insert_at += 1


def new_id() -> str:
    """A random (version 4) UUID for an AuditEvent. From a generator of this module's own,
    seeded from the operating system and again in a forked child, rather than
    ``uuid.uuid4()``: its ``os.urandom`` releases the GIL, and on a busy server each release
    lets another request's thread in before this one may go on (the id needs to be unique,
    not secret). Its own, so that drawing ids leaves the ``random`` module's shared state
    alone (property tests watch it)."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


#: the generator of :func:`new_id`
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def _entity(ref: str, kind: tuple[dict, dict]) -> dict:
    return {"what": {"reference": ref}, "type": {**kind[0]}, "role": {**kind[1]}}


def _now_us() -> int:
    global _now
    if _now is None:
        from fkj.store.backend import now_us
        _now = now_us
    return _now()


_now = None


# ------------------------------------------------------------------ derived (search) columns

def canonical(event: dict) -> str:
    """The canonical JSON text of an event: what is stored and hashed (sorted keys, no
    whitespace, UTF-8 unescaped; orjson, a tenth of the stdlib's time on the read path)."""
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()


def canonical_stdlib(event: dict) -> str:
    """The canonical form records were written in before :func:`canonical` used orjson
    (the same text for every event the platform writes; ``verify`` accepts either)."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def index_fields(event: dict) -> dict[str, Any]:
    """The search columns of ``audit_log`` derived from an AuditEvent (also used by verify)."""
    agents = event.get("agent") or []
    requestor = next((a for a in agents if a.get("requestor")), agents[0] if agents else {})
    who = requestor.get("who") or {}
    agent = (who.get("identifier") or {}).get("value") or who.get("display") or ""
    patients = [e["what"]["reference"] for e in event.get("entity") or ()
                if (e.get("role") or {}).get("code") == "1" and (e.get("what") or {}).get("reference")]
    purposes = [c.get("code") for pc in event.get("purposeOfEvent") or ()
                for c in pc.get("coding") or () if c.get("code")]
    subtype = next((c.get("code") for c in reversed(event.get("subtype") or ()) if c.get("code")), "")
    return {
        "recorded": parse_instant(event["recorded"]),
        "patients": " ".join(patients),
        "agent": agent[:200],
        "action": event.get("action", ""),
        "subtype": subtype[:64],
        "purpose": " ".join(purposes)[:100],
        "outcome": event.get("outcome", ""),
        # the lookup rows (audit_patient.patient holds 128 characters): a longer reference
        # is no patient's (FHIR ids have at most 64 characters) and stays in the content
        # and in ``patients`` only
        "patient_list": [p for p in patients if len(p) <= MAX_INDEXED_PATIENT],
    }


#: the longest patient reference indexed in ``audit_patient``
MAX_INDEXED_PATIENT = 128
