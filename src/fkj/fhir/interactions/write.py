"""create, update, patch and delete, with their conditional forms."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fkj.errors import BadRequest, InvalidResource
from fkj.fhir.interactions.common import resource_response, version_headers
from fkj.fhir.outcomes import info_outcome
from fkj.fhir.request import FhirRequest, FhirResponse


def _body_type_check(req: FhirRequest, rtype: str) -> dict:
    body = req.body
    if not isinstance(body, dict):
        raise InvalidResource("the body must be a JSON object holding a FHIR resource")
    if body.get("resourceType") != rtype:
        raise InvalidResource(f"resourceType {body.get('resourceType')!r} does not match the "
                              f"URL type {rtype}", expression="resourceType")
    return body


def create(req: FhirRequest, repo, rtype: str, base: str) -> FhirResponse:
    body = _body_type_check(req, rtype)
    cond = req.header("if-none-exist")
    criteria = parse_qsl(cond.lstrip("?"), keep_blank_values=True) if cond else None
    if cond is not None and not criteria:
        raise BadRequest("If-None-Exist holds no search criteria", expression="If-None-Exist")
    out = repo.create(body, rtype=rtype, if_none_exist=criteria)
    return resource_response(req, out.status, out.stored, base=base, with_location=True)


def update(req: FhirRequest, repo, rtype: str, rid: str, base: str) -> FhirResponse:
    body = _body_type_check(req, rtype)
    if "id" not in body:
        raise InvalidResource("an update must carry the resource id in the body",
                              expression=f"{rtype}.id", code="required")
    if body.get("id") != rid:
        raise InvalidResource(f"the id in the body ({body.get('id')!r}) differs from the id in "
                              f"the URL ({rid})", expression=f"{rtype}.id")
    out = repo.update(rtype, rid, body, if_match=req.header("if-match"))
    return resource_response(req, out.status, out.stored, base=base, with_location=out.created)


def conditional_update(req: FhirRequest, repo, rtype: str, base: str) -> FhirResponse:
    body = _body_type_check(req, rtype)
    out = repo.conditional_update(rtype, req.query, body, if_match=req.header("if-match"))
    return resource_response(req, out.status, out.stored, base=base, with_location=out.created)


def patch(req: FhirRequest, repo, rtype: str, rid: str, base: str) -> FhirResponse:
    out = repo.patch(rtype, rid, req.body, if_match=req.header("if-match"))
    if req.prefer_return not in ("minimal", "OperationOutcome") \
            and not repo.visible("read", out.stored.content):
        # the patched resource holds what was stored: a caller who may update but not read
        # it (user/Patient.u) is told the outcome, not shown the resource
        return FhirResponse(out.status, info_outcome(
            f"{rtype}/{rid} version {out.stored.version}"), version_headers(out.stored))
    return resource_response(req, out.status, out.stored, base=base)


def conditional_patch(req: FhirRequest, repo, rtype: str, base: str) -> FhirResponse:
    from fkj.errors import NotFound, PreconditionFailed
    found = repo.find_ids(rtype, req.query)
    if not found:
        raise NotFound("conditional patch matched no resource")
    if len(found) > 1:
        raise PreconditionFailed(f"conditional patch matched {len(found)} resources")
    return patch(req, repo, rtype, found[0], base)


def delete(req: FhirRequest, repo, rtype: str, rid: str) -> FhirResponse:
    out = repo.delete(rtype, rid, if_match=req.header("if-match"))
    return _deleted(req, out, f"{rtype}/{rid}")


def conditional_delete(req: FhirRequest, repo, rtype: str) -> FhirResponse:
    out = repo.conditional_delete(rtype, req.query)
    if out is None:
        return _deleted(req, None, "no matching resource; nothing")
    return _deleted(req, out, f"{rtype}/{out.stored.id}")


def _deleted(req: FhirRequest, out, what: str) -> FhirResponse:
    headers = version_headers(out.stored) if out is not None and out.status != 204 else {}
    if req.prefer_return == "minimal":
        return FhirResponse(204, None, headers)
    already = out is not None and out.status == 204
    text = f"{what} was deleted" + (" already" if already else "")
    return FhirResponse(200, info_outcome(text), headers)
