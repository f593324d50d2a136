"""The route table: (method, path shape) → interaction. Used for REST calls and for every
entry of batch and transaction Bundles alike."""

from __future__ import annotations

from fkj.errors import BadRequest, MethodNotAllowed, NotFound
from fkj.fhir.interactions import history as history_i
from fkj.fhir.interactions import read as read_i
from fkj.fhir.interactions import search as search_i
from fkj.fhir.interactions import write as write_i
from fkj.fhir.request import FhirRequest, FhirResponse
from fkj.model.references import RELATIVE


def _known(rtype: str) -> bool:
    from fkj.model.validation import is_known_type
    return is_known_type(rtype)


def _type(rtype: str) -> str:
    if not _known(rtype):
        raise NotFound(f"{rtype!r} is not a FHIR R4 resource type")
    return rtype


def _id(rid: str) -> str:
    if not RELATIVE.match(f"Resource/{rid}"):
        raise BadRequest(f"{rid!r} is not a valid resource id", expression="id")
    return rid


def dispatch(req: FhirRequest, repo, app) -> FhirResponse:
    """Route one request. ``app`` gives access to settings and operations."""
    from fkj.fhir import operations

    s, m = req.segments, req.method
    base, settings = app.settings.base_url, app.settings
    n = len(s)
    if n == 0:
        if m == "POST":
            from fkj.fhir.bundles import process_bundle
            return process_bundle(req, repo, app)
        if m == "GET":
            return search_i.search(req, repo, None, base, settings)
        raise MethodNotAllowed(f"{m} is not allowed on the tenant base")
    head = s[0]
    if head == "metadata" and n == 1 and m == "GET":
        from fkj.fhir.capability import capability_statement
        return FhirResponse(200, capability_statement(app, req.tenant))
    if head == "_history" and n == 1 and m == "GET":
        return history_i.history(req, repo, None, None, base, settings)
    if head == "_search" and n == 1 and m == "POST":
        return search_i.search(req, repo, None, base, settings)
    if head.startswith("$"):
        return operations.run(req, repo, app, head[1:], None, None)
    rtype = _type(head)
    if n == 1:
        if m == "GET":
            return search_i.search(req, repo, rtype, base, settings)
        if m == "POST":
            return write_i.create(req, repo, rtype, base)
        if m == "PUT":
            return write_i.conditional_update(req, repo, rtype, base)
        if m == "DELETE":
            return write_i.conditional_delete(req, repo, rtype)
        if m == "PATCH":
            return write_i.conditional_patch(req, repo, rtype, base)
        raise MethodNotAllowed(f"{m} is not allowed on {rtype}")
    second = s[1]
    if n == 2 and second == "_search" and m == "POST":
        return search_i.search(req, repo, rtype, base, settings)
    if n == 2 and second == "_history" and m == "GET":
        return history_i.history(req, repo, rtype, None, base, settings)
    if second.startswith("$"):
        if n != 2:
            raise NotFound("unknown path")
        return operations.run(req, repo, app, second[1:], rtype, None)
    rid = _id(second)
    if n == 2:
        if m in ("GET", "HEAD"):
            return read_i.read(req, repo, rtype, rid)
        if m == "PUT":
            return write_i.update(req, repo, rtype, rid, base)
        if m == "PATCH":
            return write_i.patch(req, repo, rtype, rid, base)
        if m == "DELETE":
            return write_i.delete(req, repo, rtype, rid)
        raise MethodNotAllowed(f"{m} is not allowed on {rtype}/{rid}")
    third = s[2]
    if third == "_history" and m == "GET":
        if n == 3:
            return history_i.history(req, repo, rtype, rid, base, settings)
        if n == 4:
            return read_i.vread(req, repo, rtype, rid, s[3])
    if third.startswith("$") and n == 3:
        return operations.run(req, repo, app, third[1:], rtype, rid)
    if n == 3 and m == "GET" and _known(third):
        # compartment search: Patient/123/Observation
        return search_i.search(req, repo, third, base, settings, compartment=(rtype, rid))
    raise NotFound(f"no such path: {'/'.join(s)}")
