"""``$get-ws-binding-token`` (Subscriptions Backport): a short-lived token that binds a
websocket to one or more websocket-channel Subscriptions the caller may read.

``GET [base]/Subscription/{id}/$get-ws-binding-token`` or
``GET [base]/Subscription/$get-ws-binding-token?id=a,b``."""

from __future__ import annotations

from sqlalchemy import select

from fkj.errors import BadRequest, NotFound
from fkj.fhir.request import FhirRequest, FhirResponse

DEFINITION = {"name": "get-ws-binding-token", "levels": ("type", "instance"),
              "methods": ("GET", "POST"),
              "url": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
                     "backport-subscription-get-ws-binding-token"}


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    from fkj.events.tables import subscription_state as S
    from fkj.events.websocket import issue_token, websocket_url
    from fkj.fhir.jsonio import instant
    from fkj.fhir.operations.status import _params
    from fkj.store.backend import scope

    if rtype != "Subscription":
        raise NotFound("$get-ws-binding-token is only available on Subscription")
    ids = [rid] if rid else _params(req, "id")
    if not ids:
        raise BadRequest("name at least one Subscription (id)", expression="id")
    for sid in ids:
        repo.read("Subscription", sid)  # the caller must be allowed to see each
    with scope(repo.services.engine, repo.tenant) as conn:
        rows = {r.id: r for r in conn.execute(select(S.c.id, S.c.channel).where(
            S.c.tenant == repo.tenant, S.c.id.in_(ids)))}
    for sid in ids:
        if sid not in rows or rows[sid].channel != "websocket":
            raise BadRequest(f"Subscription/{sid} does not use the websocket channel",
                             expression="id")
    token, expires = issue_token(repo.services.engine, repo.tenant, ids)
    params = [{"name": "token", "valueString": token},
              {"name": "expiration", "valueDateTime": instant(expires)},
              *({"name": "subscription", "valueString": sid} for sid in ids),
              {"name": "websocket-url",
               "valueUrl": websocket_url(app.settings.base_url, repo.tenant)}]
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": params})
