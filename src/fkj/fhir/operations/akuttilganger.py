"""``GET [base]/$akuttilganger?since=&until=``: the emergency accesses of the municipality, for
follow-up (etterfølgende kontroll). For personnel with the role ``leder`` and system clients.
Answers Parameters with one ``akuttilgang`` parameter per access (who, patient, reason,
started, expires), oldest first; ``since``/``until`` filter on the start (date or instant)."""

from __future__ import annotations

from fkj.errors import BadRequest, Forbidden
from fkj.fhir.request import FhirRequest, FhirResponse

DEFINITION = {"name": "akuttilganger", "levels": ("system",), "methods": ("GET",),
              "url": "http://fkj.no/fhir/OperationDefinition/akuttilganger"}


def _instant(name: str, value: str, upper: bool) -> int:
    from fkj.search.params.date import date_range
    try:
        lo, hi = date_range(value)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be a date or instant, got {value!r}",
                         expression=name) from None
    return int((hi if upper else lo) * 1_000_000)


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    from fkj.fhir.operations.akuttilgang import grant_parameters
    from fkj.security.policy.emergency import list_grants

    p = repo.principal
    if p.kind == "citizen" or (p.kind == "practitioner" and "leder" not in p.roles):
        raise Forbidden("bare ledere og systemklienter kan se listen over akuttilganger")
    since = until = None
    for k, v in req.query:
        if k == "since":
            since = _instant("since", v, upper=False)
        elif k == "until":
            until = _instant("until", v, upper=True)
    rows = list_grants(repo, since, until)
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": [
        {"name": "akuttilgang", "part": grant_parameters(r)} for r in rows]})
