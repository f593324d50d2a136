"""batch and transaction Bundles (FHIR R4 §3.1.0.11).

A transaction is all-or-nothing: every entry runs in one database transaction, in the
order the specification prescribes (DELETE, POST, PUT/PATCH, GET), after ``urn:uuid:`` full
URLs and conditional references (``Patient?identifier=…``) have been resolved and rewritten.
If any entry fails, nothing is stored and the error names the entry.

A batch runs each entry on its own; a failed entry gets its own status and OperationOutcome.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import orjson

from fkj.errors import BadRequest, FhirError, InvalidBundle, NotFound, PreconditionFailed
from fkj.fhir.interactions.common import location
from fkj.fhir.jsonio import instant
from fkj.fhir.outcomes import operation_outcome, prefix_expressions
from fkj.fhir.request import FhirRequest, FhirResponse
from fkj.model.references import iter_references, split_relative
from fkj.repository.repository import new_id

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


def process_bundle(req: FhirRequest, repo, app) -> FhirResponse:
    bundle = req.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidBundle("POST to the base must carry a Bundle", expression="resourceType")
    btype = bundle.get("type")
    if btype not in ("transaction", "batch"):
        raise InvalidBundle(f"only batch and transaction Bundles can be processed, got {btype!r}",
                            expression="Bundle.type")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidBundle("Bundle.entry must be an array", expression="Bundle.entry")
    parsed = [_parse_entry(req, e, i, app) for i, e in enumerate(entries)]
    if btype == "transaction":
        from fkj.model.validation import validate_resource
        shell = {k: v for k, v in bundle.items() if k != "entry"}
        issues = validate_resource(shell)
        if issues:
            raise InvalidBundle(issues[0].diagnostics, issues=issues)
        return _transaction(req, repo, app, parsed)
    return _batch(req, repo, app, parsed)


class _Entry:
    def __init__(self, index, method, segments, query, resource, full_url, headers):
        self.index = index
        self.method = method
        self.segments = segments
        self.query = query
        self.resource = resource
        self.full_url = full_url
        self.headers = headers
        self.response: dict | None = None
        self.assigned: str | None = None  # Type/id this entry creates or updates
        self.matched: str | None = None  # conditional create matched an existing resource

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _parse_entry(req: FhirRequest, e, i: int, app) -> _Entry:
    where = f"Bundle.entry[{i}]"
    if not isinstance(e, dict):
        raise InvalidBundle(f"{where} must be an object", expression=where)
    request = e.get("request")
    if not isinstance(request, dict):
        raise InvalidBundle(f"{where}.request is required", expression=f"{where}.request")
    method = request.get("method")
    url = request.get("url")
    if method not in ORDER:
        raise InvalidBundle(f"{where}.request.method {method!r} is not supported",
                            expression=f"{where}.request.method")
    if not isinstance(url, str) or not url:
        raise InvalidBundle(f"{where}.request.url is required", expression=f"{where}.request.url")
    own = f"{app.settings.base_url}/fhir/{req.tenant}/"
    if url.startswith(own):
        url = url[len(own):]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise InvalidBundle(f"{where}.request.url must be relative to this server",
                            expression=f"{where}.request.url")
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qsl(parts.query, keep_blank_values=True)
    resource = e.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise InvalidBundle(f"{where}.resource is required for {method}",
                            expression=f"{where}.resource")
    if method == "PATCH":
        resource = _patch_body(e, where)
    headers = {}
    for field, header in (("ifNoneExist", "if-none-exist"), ("ifMatch", "if-match"),
                          ("ifNoneMatch", "if-none-match"), ("ifModifiedSince", "if-modified-since")):
        if isinstance(request.get(field), str):
            headers[header] = request[field]
    full_url = e.get("fullUrl") if isinstance(e.get("fullUrl"), str) else None
    return _Entry(i, method, segments, query, resource, full_url, headers)


def _patch_body(e: dict, where: str):
    res = e.get("resource")
    if isinstance(res, dict) and res.get("resourceType") == "Binary":
        import base64
        try:
            return orjson.loads(base64.b64decode(res.get("data", "")))
        except Exception:
            raise InvalidBundle(f"{where}.resource: Binary does not hold a JSON Patch",
                                expression=f"{where}.resource") from None
    if isinstance(res, dict) and res.get("resourceType") == "Parameters":
        raise InvalidBundle(f"{where}: FHIRPath Patch is not supported; use JSON Patch in a Binary",
                            expression=f"{where}.resource")
    raise InvalidBundle(f"{where}: PATCH needs a Binary resource holding a JSON Patch",
                        expression=f"{where}.resource")


# ---------------------------------------------------------------------------- transaction
def _transaction(req: FhirRequest, repo, app, entries: list[_Entry]) -> FhirResponse:
    current = None
    with repo.transaction():
        try:
            _resolve_ids(repo, entries)
            _rewrite_references(repo, entries)
            # a patient named by fødselsnummer … and registered in this same transaction
            from fkj.repository.patients import resolve_within
            resolve_within([(e.resource, e.assigned) for e in entries
                            if e.method in ("POST", "PUT")])
            repo.prefetch([tuple(e.assigned.split("/", 1)) for e in entries
                           if e.method == "PUT" and e.assigned])
            for e in sorted(entries, key=lambda x: ORDER[x.method]):
                current = e
                repo.where = e.where
                e.response = _run_entry(req, repo, app, e, in_transaction=True)
            repo.where = ""
        except FhirError as err:
            if current is not None and not any(x.startswith("Bundle.") for i in err.issues
                                               for x in i.expression):
                prefix_expressions(err, current.where)
            raise
    return _response_bundle("transaction-response", entries)


def _resolve_ids(repo, entries: list[_Entry]) -> None:
    mapping = {}
    for e in entries:
        if e.method == "POST" and e.segments:
            rtype = e.segments[0]
            cond = e.headers.get("if-none-exist")
            if cond:
                criteria = parse_qsl(cond.lstrip("?"), keep_blank_values=True)
                try:
                    found = repo.find_ids(rtype, criteria)
                except FhirError as err:
                    raise prefix_expressions(err, e.where)
                if len(found) > 1:
                    raise prefix_expressions(PreconditionFailed(
                        f"ifNoneExist matched {len(found)} resources"), e.where)
                if found:
                    e.matched = f"{rtype}/{found[0]}"
            e.assigned = e.matched or f"{rtype}/{new_id()}"
        elif e.method == "PUT" and len(e.segments) == 2:
            e.assigned = f"{e.segments[0]}/{e.segments[1]}"
        elif e.method == "PUT" and len(e.segments) == 1 and e.query:
            found = repo.find_ids(e.segments[0], e.query)
            if len(found) > 1:
                raise prefix_expressions(PreconditionFailed(
                    f"conditional update matched {len(found)} resources"), e.where)
            rid = found[0] if found else (e.resource or {}).get("id") or new_id()
            e.assigned = f"{e.segments[0]}/{rid}"
        if e.full_url and e.assigned:
            if e.full_url in mapping:
                raise prefix_expressions(InvalidBundle(
                    f"fullUrl {e.full_url} appears more than once"), e.where)
            mapping[e.full_url] = e.assigned
    for e in entries:
        e_map = mapping
        e.mapping = e_map  # type: ignore[attr-defined]


def _may_need_rewrite(resource: dict) -> bool:
    """Cheap pre-check (one serialisation instead of a walk): only a resource whose JSON
    contains ``urn:`` or ``?`` can hold a reference that needs rewriting."""
    text = orjson.dumps(resource)
    return b"urn:" in text or b"?" in text


def _rewrite_references(repo, entries: list[_Entry]) -> None:
    cache: dict[str, str] = {}
    for e in entries:
        if not isinstance(e.resource, dict) or e.method not in ("POST", "PUT"):
            continue
        mapping = e.mapping  # type: ignore[attr-defined]
        if not mapping and not _may_need_rewrite(e.resource):
            continue
        rtype = e.resource.get("resourceType", "")
        for path, obj in iter_references(e.resource, rtype):
            ref = obj["reference"]
            if ref in mapping:
                obj["reference"] = mapping[ref]
            elif ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
                raise prefix_expressions(BadRequest(
                    f"reference {ref} matches no fullUrl in the transaction",
                    expression=path + ".reference"), e.where)
            elif "?" in ref and not ref.startswith(("http://", "https://")):
                if ref not in cache:
                    ctype, _, q = ref.partition("?")
                    found = repo.find_ids(ctype, parse_qsl(q, keep_blank_values=True))
                    if len(found) != 1:
                        raise prefix_expressions(PreconditionFailed(
                            f"conditional reference {ref} matched {len(found)} resources; "
                            "it must match exactly one", expression=path + ".reference"), e.where)
                    cache[ref] = f"{ctype}/{found[0]}"
                obj["reference"] = cache[ref]


def _run_entry(req: FhirRequest, repo, app, e: _Entry, *, in_transaction: bool) -> dict:
    from fkj.fhir.router import dispatch

    if in_transaction and e.method == "POST":
        if e.matched:
            s = repo.read(*e.matched.split("/", 1))
            return _entry_response(req, app, 200, s, e)
        rtype = e.segments[0] if e.segments else None
        if rtype is None or len(e.segments) != 1:
            raise InvalidBundle(f"POST url must be a resource type, got {'/'.join(e.segments)}")
        if e.resource.get("resourceType") != rtype:
            raise BadRequest(f"resourceType {e.resource.get('resourceType')!r} does not match "
                             f"the url {rtype}", expression=f"{e.where}.resource.resourceType")
        out = repo.create(e.resource, rtype=rtype, assigned_id=e.assigned.split("/", 1)[1])
        return _entry_response(req, app, 201, out.stored, e)
    if in_transaction and e.method == "PUT" and len(e.segments) == 1:
        e.segments = e.assigned.split("/")
        e.resource.setdefault("id", e.segments[1])
    sub = FhirRequest(e.method, req.tenant, e.segments, e.query,
                      {**{k: v for k, v in req.headers.items() if k == "prefer"}, **e.headers},
                      e.resource, where=e.where)
    resp = dispatch(sub, repo, app)
    out = {"response": {"status": STATUS_TEXT.get(resp.status, str(resp.status))}}
    for h, f in (("Location", "location"), ("ETag", "etag")):
        if h in resp.headers:
            out["response"][f] = resp.headers[h]
    body = resp.body
    if body is not None and (e.method in ("GET", "HEAD") or req.prefer_return != "minimal"):
        out["resource"] = orjson.loads(body) if isinstance(body, (str, bytes)) else body
    return out


def _entry_response(req: FhirRequest, app, status: int, s, e: _Entry) -> dict:
    out = {"response": {"status": STATUS_TEXT[status],
                        "location": location(app.settings.base_url, req.tenant, s),
                        "etag": s.etag, "lastModified": instant(s.last_updated)}}
    if req.prefer_return == "representation" and req.header("prefer"):
        out["resource"] = orjson.loads(s.content)
    elif req.prefer_return == "OperationOutcome":
        out["response"]["outcome"] = operation_outcome([])
    return out


# ---------------------------------------------------------------------------- batch
def _batch(req: FhirRequest, repo, app, entries: list[_Entry]) -> FhirResponse:
    for e in entries:
        e.mapping = {}  # type: ignore[attr-defined]
        try:
            e.response = _run_entry(req, repo, app, e, in_transaction=False)
        except FhirError as err:
            prefix_expressions(err, e.where)
            e.response = {"response": {"status": f"{err.status}",
                                       "outcome": operation_outcome(err.issues)}}
    return _response_bundle("batch-response", entries)


def _response_bundle(btype: str, entries: list[_Entry]) -> FhirResponse:
    return FhirResponse(200, {"resourceType": "Bundle", "type": btype,
                              "entry": [e.response for e in entries]})


__all__ = ["process_bundle", "NotFound"]
