"""The facts of a request's AuditEvent, recorded before the answer; the event built later.

A read's record must be *written* before the answer (docs/audit.md), but nothing requires
the BALP-shaped AuditEvent to be built then. The request's thread writes these facts — who
(the principal), what (action, interaction, the resources shown, their patients, the query),
the outcome, the purpose, the time and the event's id — as one journal line; the shipper
builds the AuditEvent from them (:meth:`EventFacts.build`, the same
:func:`~fkj.security.audit.events.build_audit_event`) when it chains the record. Building
it took about a third of the audit log's time in a search's answer, and a busy server ships
once a second, off the answers' path.

The facts are checked when they are made (``check_event``, as ``build_audit_event`` does), so a
record that was written can always be built; should building still fail, the shipper chains
a minimal event that names the failure rather than lose the record (:meth:`build`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fkj.security.audit.events import (
    _now_us,
    add_compact_entities,
    build_audit_event,
    check_event,
    new_id,
)
from fkj.types import Principal

#: a read or vread touching more data resources than this gets a compact entity list
COMPACT_OVER = 25
#: the interactions that show one resource: each gets an entity of its own. What shows a
#: set (a search, history, an operation) lists it compactly — one entity per resource type
#: with the ids — once there is more than one: BALP's query pattern records the query and
#: the patients, the list of what was shown is ours, and one entity per result made a
#: search's record 5.5 kB for ten results (a third of the database's work per search)
SINGLE = frozenset({"read", "vread", "create", "update", "patch", "delete"})

#: the principal's attributes an AuditEvent shows
_PRINCIPAL_FIELDS = ("kind", "subject", "tenant", "hpr_number", "pid", "unit", "organisation",
                     "client_id", "purpose_of_use", "fhir_user")


@dataclass(slots=True)
class EventFacts:
    principal: Principal
    action: str
    subtype: str
    resources: list[str]
    patients: list[str]
    outcome: str
    purpose: str | None = None
    query: str | None = None
    description: str | None = None
    recorded_us: int = 0
    id: str = field(default="")

    def __post_init__(self) -> None:
        check_event(self.action, self.subtype, self.outcome)
        if not self.recorded_us:
            self.recorded_us = _now_us()
        if not self.id:
            self.id = new_id()

    def build(self) -> dict:
        """The AuditEvent (BALP), as :func:`build_audit_event` makes it."""
        compact = len(self.resources) > (COMPACT_OVER if self.subtype in SINGLE else 1)
        event = build_audit_event(
            self.principal, action=self.action, subtype=self.subtype,
            resources=[] if compact else self.resources, patients=self.patients,
            outcome=self.outcome, description=self.description, purpose=self.purpose,
            query=self.query, recorded_us=self.recorded_us)
        event["id"] = self.id
        if compact:
            add_compact_entities(event, self.resources)
        return event

    def to_json(self) -> dict:
        p = self.principal
        who = {k: v for k in _PRINCIPAL_FIELDS if (v := getattr(p, k)) is not None}
        if p.roles:
            who["roles"] = sorted(p.roles)
        out = {"p": who, "a": self.action, "s": self.subtype, "o": self.outcome,
               "ts": self.recorded_us, "id": self.id}
        for key, value in (("r", self.resources), ("pt", self.patients), ("u", self.purpose),
                           ("q", self.query), ("d", self.description)):
            if value:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, obj: dict) -> EventFacts:
        who = dict(obj["p"])
        who["roles"] = frozenset(who.get("roles") or ())
        return cls(Principal(**who), obj["a"], obj["s"], list(obj.get("r") or ()),
                   list(obj.get("pt") or ()), obj["o"], obj.get("u"), obj.get("q"),
                   obj.get("d"), int(obj["ts"]), str(obj["id"]))


def event_of(obj: dict) -> dict:
    """The AuditEvent of facts read back from a journal line; if they cannot be built, a
    minimal event that keeps what is known and says why."""
    try:
        return EventFacts.from_json(obj).build()
    except Exception as e:  # noqa: BLE001 - never lose a written record
        who = obj.get("p") if isinstance(obj.get("p"), dict) else {}
        principal = Principal(kind="client", subject=str(who.get("subject") or "unknown"),
                              tenant=who.get("tenant"))
        event = build_audit_event(
            principal, action="E", subtype="operation", resources=[], patients=[
                p for p in obj.get("pt") or () if isinstance(p, str)],
            outcome="0", description=f"audit record rebuilt from incomplete facts ({e}): "
                                     f"{str(obj)[:800]}",
            recorded_us=obj["ts"] if isinstance(obj.get("ts"), int) else None)
        return event


__all__ = ["COMPACT_OVER", "SINGLE", "EventFacts", "event_of"]
