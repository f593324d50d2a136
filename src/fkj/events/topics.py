"""The SubscriptionTopics the platform ships, defined in code.

Each topic names the resource types it covers and a trigger: ``trigger(action, new, old)``
decides from the event's action (create/update/delete) and the resource versions (the new
one, and the previous one for updates) whether the event is a notification of the topic.
Filter criteria (a FHIR search on the type) narrow it further per subscription.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

BASE = "http://fkj.no/fhir/SubscriptionTopic/"
CONSENT_KIND = "http://fkj.no/fhir/CodeSystem/consent-kind"
#: Consent kinds that are critical information (treatment limitations)
CRITICAL_CONSENT_KINDS = {"hlr-minus", "behandlingsbegrensning", "treatment-limit"}


@dataclass(frozen=True)
class Topic:
    url: str
    title: str
    description: str
    #: resource types covered; None = any (the filter criteria then name the types)
    types: tuple[str, ...] | None
    trigger: Callable[[str, dict | None, dict | None], bool] = field(
        default=lambda action, new, old: True)
    #: does the trigger need the resource versions (otherwise only the event row)
    needs_content: bool = False
    actions: tuple[str, ...] = ("create", "update", "delete")

    def covers(self, rtype: str, action: str) -> bool:
        return action in self.actions and (self.types is None or rtype in self.types)

    def resource(self) -> dict:
        """A SubscriptionTopic-like description (R5 shape) for documentation and $status."""
        return {"resourceType": "SubscriptionTopic", "url": self.url, "title": self.title,
                "status": "active", "description": self.description,
                "resourceTrigger": [{"resource": t, "supportedInteraction": list(self.actions)}
                                    for t in (self.types or ("Resource",))]}


def _critical(action: str, new: dict | None, old: dict | None) -> bool:
    res = new or old or {}
    if res.get("resourceType") != "Consent":
        return True
    return _is_treatment_limit(new) or _is_treatment_limit(old)


def _is_treatment_limit(res: dict | None) -> bool:
    if not res:
        return False
    for tag in (res.get("meta") or {}).get("tag") or ():
        if tag.get("system") == CONSENT_KIND and tag.get("code") in CRITICAL_CONSENT_KINDS:
            return True
    for c in (res.get("scope") or {}).get("coding") or ():
        if c.get("code") == "treatment":
            return True
    return False


def _admission(action: str, new: dict | None, old: dict | None) -> bool:
    if action == "delete" or new is None:
        return False
    status = new.get("status")
    period = new.get("period") or {}
    if old is None:  # created: an admission if it is under way, a discharge if finished
        return status in ("arrived", "in-progress", "onleave", "finished") or bool(period)
    old_period = old.get("period") or {}
    return (status != old.get("status") or period.get("start") != old_period.get("start")
            or period.get("end") != old_period.get("end"))


TOPICS: dict[str, Topic] = {t.url: t for t in (
    Topic(BASE + "resource-change", "Resource created, updated or deleted",
          "Any resource created, updated or deleted; the filter criteria (a FHIR search on a "
          "type, e.g. Observation?patient=Patient/1) name the types and narrow the matches.",
          None),
    Topic(BASE + "critical-information", "Critical information changed for a patient",
          "AllergyIntolerance, Flag, and Consent with an HLR-minus or other treatment "
          "limitation, created, updated or deleted.",
          ("AllergyIntolerance", "Flag", "Consent"), _critical, needs_content=True),
    Topic(BASE + "vedtak", "New or changed vedtak",
          "A ServiceRequest (vedtak about municipal health and care services) created or "
          "updated.", ("ServiceRequest",), actions=("create", "update")),
    Topic(BASE + "encounter-admission-discharge", "Patient admitted or discharged",
          "An Encounter created under way or finished, or whose status or period changed.",
          ("Encounter",), _admission, needs_content=True, actions=("create", "update")),
)}
