"""``$get-ws-binding-token`` (Subscriptions Backport): a short-lived token that binds a
websocket to one or more websocket-channel Subscriptions **of the caller's own**.

``GET [base]/Subscription/{id}/$get-ws-binding-token`` or
``GET [base]/Subscription/$get-ws-binding-token?id=a,b``.

Only the owner binds: a Subscription the caller may not read answers 404 exactly as one that
does not exist; a tenant admin (who may read it) that is not its owner gets 403. The token
remembers the caller: what the socket is sent is read and audited as the caller."""

from __future__ import annotations

from sqlalchemy import select

from fkj.errors import BadRequest, Forbidden, NotFound
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
    from fkj.events.access import is_owner
    for sid in ids:
        # 404 unless the caller may see it (owner or tenant admin), as for an unknown id
        sub = repo.read("Subscription", sid).json()
        if not is_owner(repo.principal, sub):
            raise Forbidden(f"bare eieren av Subscription/{sid} kan binde en websocket til "
                            "det", expression="id")
    with scope(repo.services.engine, repo.tenant) as conn:
        rows = {r.id: r for r in conn.execute(select(S.c.id, S.c.channel).where(
            S.c.tenant == repo.tenant, S.c.id.in_(ids)))}
    for sid in ids:
        if sid not in rows or rows[sid].channel != "websocket":
            raise BadRequest(f"Subscription/{sid} does not use the websocket channel",
                             expression="id")
    token, expires = issue_token(repo.services.engine, repo.tenant, ids, repo.principal)
    params = [{"name": "token", "valueString": token},
              {"name": "expiration", "valueDateTime": instant(expires)},
              *({"name": "subscription", "valueString": sid} for sid in ids),
              {"name": "websocket-url",
               "valueUrl": websocket_url(app.settings.base_url, repo.tenant)}]
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": params})
