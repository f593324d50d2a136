"""``$events`` (Subscriptions Backport): replay a Subscription's notifications by event number.

``GET [base]/Subscription/{id}/$events?eventsSinceNumber=N&eventsUntilNumber=M&content=…``
answers a notification Bundle (``history``, SubscriptionStatus of type ``query-event`` first)
with the matched events N…M (inclusive; at most 1000). ``content`` defaults to the
subscription's; full resources only where the caller may read them. A Subscription the
caller may not read (not its own, and the caller is no tenant admin) answers exactly as one
that does not exist (404).
"""

from __future__ import annotations

from sqlalchemy import select

from fkj.errors import InvalidSearch, NotFound
from fkj.fhir.request import FhirRequest, FhirResponse

DEFINITION = {"name": "events", "levels": ("instance",), "methods": ("GET", "POST"),
              "url": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
                     "backport-subscription-events"}
LIMIT = 1000


def _param(req: FhirRequest, name: str) -> str | None:
    for k, v in req.query:
        if k == name:
            return v
    body = req.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        params = body.get("parameter")
        for p in params if isinstance(params, list) else ():
            if isinstance(p, dict) and p.get("name") == name:
                for k in ("valueString", "valueCode", "valueInteger64", "valueInteger"):
                    if k in p:
                        return str(p[k])
                return ""
    return None


def _number(v: str | None, name: str) -> int | None:
    if v is None or v == "":
        return None
    if not (v.isascii() and v.isdigit()) or len(v) > 18:
        raise InvalidSearch(f"{name} must be an event number, got {v[:40]!r}", expression=name)
    return int(v)


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    from types import SimpleNamespace

    from fkj.events.subscriptions import CONTENTS, notification_bundle
    from fkj.events.tables import subscription_event as E
    from fkj.events.tables import subscription_state as S
    from fkj.store.backend import scope

    if rtype != "Subscription":
        raise NotFound("$events is only available on Subscription")
    repo.read("Subscription", rid)  # owner or tenant admin, else 404 as for an unknown id
    since = _number(_param(req, "eventsSinceNumber"), "eventsSinceNumber") or 1
    until = _number(_param(req, "eventsUntilNumber"), "eventsUntilNumber")
    content = _param(req, "content")
    if content is not None and content not in CONTENTS:
        raise InvalidSearch(f"content must be one of {', '.join(CONTENTS)}", expression="content")
    with scope(repo.services.engine, repo.tenant) as conn:
        row = conn.execute(select(S).where(S.c.tenant == repo.tenant, S.c.id == rid)).first()
        if row is None:
            raise NotFound(f"Subscription/{rid} has no delivery state")
        q = select(E).where(E.c.tenant == repo.tenant, E.c.sub_id == rid, E.c.number >= since)
        if until is not None:
            q = q.where(E.c.number <= until)
        events = conn.execute(q.order_by(E.c.number).limit(LIMIT)).all()
    row = SimpleNamespace(**row._mapping)
    content = content or row.content
    resources = {}
    if content == "full-resource":
        from fkj.errors import FhirError
        for ev in events:
            if ev.action != "delete":
                try:
                    resources[(ev.type, ev.rid, ev.version)] = repo.vread(
                        ev.type, ev.rid, str(ev.version)).content
                except FhirError:
                    pass
    return FhirResponse(200, notification_bundle(app.settings.base_url, repo.tenant, row,
                                                 "query-event", events, resources, content))
