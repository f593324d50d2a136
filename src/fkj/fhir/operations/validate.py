"""``$validate``: check a resource against the R4 structure without storing it.

Accepts the resource itself or a Parameters resource with a ``resource`` parameter (and an
optional ``mode`` of create, update or delete). Always answers 200 with an OperationOutcome
listing every problem found (an empty result is one informational issue).
"""

from __future__ import annotations

from fkj.errors import BadRequest, Issue
from fkj.fhir.outcomes import operation_outcome
from fkj.fhir.request import FhirRequest, FhirResponse

DEFINITION = {"name": "validate", "levels": ("type", "instance"), "methods": ("POST",),
              "reads": False,
              "url": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    from fkj.model.identifiers import identifier_issues
    from fkj.model.validation import validate_resource

    body = req.body
    mode = None
    if isinstance(body, dict) and body.get("resourceType") == "Parameters" and rtype != "Parameters":
        resource = None
        for p in body.get("parameter", []) or []:
            if not isinstance(p, dict):
                continue
            if p.get("name") == "resource":
                resource = p.get("resource")
            elif p.get("name") == "mode":
                mode = p.get("valueCode")
        if resource is None and mode != "delete":
            raise BadRequest("Parameters for $validate need a 'resource' parameter",
                             expression="Parameters.parameter")
        body = resource
    if mode == "delete":
        repo.read(rtype, rid)
        return FhirResponse(200, operation_outcome([Issue("information", "informational",
                                                          "the resource may be deleted")]))
    issues = validate_resource(body, expected_type=rtype)
    if not issues and isinstance(body, dict):
        issues = identifier_issues(body)
    if not issues and rid is not None and isinstance(body, dict) and body.get("id") != rid:
        issues = [Issue("error", "invalid", f"the id in the body differs from {rid}",
                        [f"{rtype}.id"])]
    if not issues:
        issues = [Issue("information", "informational", "no problems were found")]
    return FhirResponse(200, operation_outcome(issues))
