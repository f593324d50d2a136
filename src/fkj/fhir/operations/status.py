"""``$status`` (Subscriptions Backport): the SubscriptionStatus of one Subscription
(``GET [base]/Subscription/{id}/$status``) or of several (``GET [base]/Subscription/$status
?id=…&status=…``), as a ``searchset`` Bundle of ``Parameters`` (type ``query-status``).

Only Subscriptions the caller may read (its own; a tenant admin's: all) are reported; any
other answers exactly as one that does not exist (404, or left out of a type-level answer)."""

from __future__ import annotations

from sqlalchemy import select

from fkj.errors import FhirError, NotFound
from fkj.fhir.request import FhirRequest, FhirResponse

DEFINITION = {"name": "status", "levels": ("type", "instance"), "methods": ("GET", "POST"),
              "url": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
                     "backport-subscription-status"}


def _params(req: FhirRequest, name: str) -> list[str]:
    out = [v for k, v in req.query if k == name]
    body = req.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        params = body.get("parameter")
        for p in params if isinstance(params, list) else ():
            if isinstance(p, dict) and p.get("name") == name:
                v = p.get("valueId") or p.get("valueCode") or p.get("valueString") or ""
                out.append(v if isinstance(v, str) else "")
    return [x.strip() for v in out for x in v.split(",") if x.strip()]


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    from fkj.events.subscriptions import status_parameters
    from fkj.events.tables import subscription_state as S
    from fkj.store.backend import scope

    if rtype != "Subscription":
        raise NotFound("$status is only available on Subscription")
    ids = [rid] if rid else _params(req, "id")
    statuses = set(_params(req, "status"))
    q = select(S).where(S.c.tenant == repo.tenant)
    if ids:
        q = q.where(S.c.id.in_(ids))
    with scope(repo.services.engine, repo.tenant) as conn:
        rows = conn.execute(q.order_by(S.c.id)).all()
    entries = []
    for row in rows:
        if statuses and row.status not in statuses:
            continue
        try:
            repo.read("Subscription", row.id)  # owner or tenant admin, else "not known"
        except FhirError:
            if rid:
                raise
            continue
        p = status_parameters(app.settings.base_url, repo.tenant, row, "query-status")
        entries.append({"fullUrl": f"urn:uuid:{p['id']}", "resource": p,
                        "search": {"mode": "match"}})
    if rid and not entries:
        raise NotFound(f"Subscription/{rid} is not known")
    return FhirResponse(200, {"resourceType": "Bundle", "type": "searchset",
                              "total": len(entries), "entry": entries})
