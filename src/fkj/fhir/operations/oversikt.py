"""``Patient/{id}/$oversikt``: the overview a clinician needs in the first minute, compiled
from the local store and the national services (Kjernejournal, PLL, prøvesvar) — see
:mod:`fkj.views.overview` and docs/overview.md.

Returns a FHIR document Bundle (Composition first). Local data is read through the
Repository (the access policy's search filters and result checks apply); federated items
pass ``repo.check_result`` before they are shown. The whole overview is audited as one access
listing every resource shown (:func:`_audit_overview`).

Parameter: ``_budget`` (milliseconds, 50–5000) overrides the tenant's total time budget.
"""

from __future__ import annotations

from fkj.errors import InvalidSearch, NotFound
from fkj.fhir.request import FhirRequest, FhirResponse

DEFINITION = {"name": "oversikt", "levels": ("instance",), "methods": ("GET", "POST"),
              "url": "http://fkj.no/fhir/OperationDefinition/Patient-oversikt"}


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    from fkj.views.overview import compile_overview, dumps
    from fkj.views.wiring import views_registry

    if rtype != "Patient":
        raise NotFound("$oversikt is only available on Patient")
    budget = None
    for k, v in req.query:
        if k == "_budget":
            if not v.isdigit() or not 50 <= int(v) <= 5000:
                raise InvalidSearch("_budget must be a number of milliseconds (50–5000)",
                                    expression="_budget")
            budget = int(v)
    base = f"{app.settings.base_url}"
    compiled = compile_overview(repo, rid, registry=views_registry(app.services),
                                base_url=base, budget_ms=budget)
    _audit_overview(repo, rid, compiled.shown_refs)
    return FhirResponse(200, dumps(compiled.bundle))


def _audit_overview(repo, patient_id: str, refs: list[str]) -> None:
    """Record the overview as ONE access to ``Patient/{patient_id}`` listing every resource
    shown (``refs``: ``Type/id`` for local resources, absolute URLs for federated items).

    Placeholder for the audit layer: calls every ``services.extras["overview_audit"]``
    callable ``(repo, patient_id, refs)``; replace or wire as the audit layer needs."""
    for hook in repo.services.extras.get("overview_audit", []) or []:
        hook(repo, patient_id, refs)
