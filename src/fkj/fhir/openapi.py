"""The OpenAPI 3 document of the FHIR REST API (published at ``/openapi.json``).

It describes the generic shape of every interaction; the CapabilityStatement
(``/fhir/{tenant}/metadata``) is the authoritative list of types and search parameters.
"""

from __future__ import annotations

import functools

RESOURCE = {"type": "object", "required": ["resourceType"],
            "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
            "additionalProperties": True}
OUTCOME = {"description": "OperationOutcome",
           "content": {"application/fhir+json": {"schema": {"type": "object"}}}}
FHIR_BODY = {"required": True, "content": {"application/fhir+json": {"schema": RESOURCE}}}


def _p(name, where="path", schema=None, required=None):
    return {"name": name, "in": where, "required": where == "path" if required is None else required,
            "schema": schema or {"type": "string"}}


def _ops(*methods, body=None, params=()):
    out = {}
    for m in methods:
        op = {"operationId": None, "parameters": list(params),
              "responses": {"200": OUTCOME, "201": OUTCOME, "204": {"description": "no content"},
                            "400": OUTCOME, "401": OUTCOME, "403": OUTCOME, "404": OUTCOME,
                            "406": OUTCOME, "409": OUTCOME, "410": OUTCOME, "412": OUTCOME,
                            "413": OUTCOME, "415": OUTCOME, "422": OUTCOME}}
        if body and m in ("post", "put"):
            op["requestBody"] = body
        if m == "patch":
            op["requestBody"] = {"required": True, "content": {"application/json-patch+json": {
                "schema": {"type": "array", "items": {"type": "object"}}}}}
        out[m] = op
    return out


@functools.cache
def _document(types: tuple[str, ...]) -> dict:
    tenant = _p("tenant", schema={"type": "string", "pattern": "^[0-9]{4}$"})
    rtype = _p("type", schema={"type": "string", "enum": list(types)})
    rid = _p("id", schema={"type": "string"})
    search_q = [_p(n, "query", required=False) for n in
                ("_id", "_count", "_sort", "_total", "_summary", "_elements", "_include",
                 "_revinclude", "_lastUpdated", "identifier", "name", "subject", "date", "code",
                 "status")]
    paths = {
        "/fhir/{tenant}/metadata": _ops("get", params=[tenant]),
        "/fhir/{tenant}": _ops("post", body=FHIR_BODY, params=[tenant]),
        "/fhir/{tenant}/_history": _ops("get", params=[tenant, _p("_count", "query", required=False),
                                                        _p("_since", "query", required=False)]),
        "/fhir/{tenant}/{type}": _ops("get", "post", body=FHIR_BODY,
                                       params=[tenant, rtype] + search_q),
        "/fhir/{tenant}/{type}/_search": _ops("post", params=[tenant, rtype]),
        "/fhir/{tenant}/{type}/_history": _ops("get", params=[tenant, rtype,
                                                               _p("_count", "query", required=False),
                                                               _p("_since", "query", required=False)]),
        "/fhir/{tenant}/{type}/$validate": _ops("post", body=FHIR_BODY, params=[tenant, rtype]),
        "/fhir/{tenant}/{type}/{id}": _ops("get", "put", "patch", "delete", body=FHIR_BODY,
                                            params=[tenant, rtype, rid]),
        "/fhir/{tenant}/{type}/{id}/_history": _ops("get", params=[tenant, rtype, rid]),
        "/fhir/{tenant}/{type}/{id}/_history/{vid}": _ops("get", params=[tenant, rtype, rid,
                                                                          _p("vid")]),
    }
    for path, ops in paths.items():
        for method, op in ops.items():
            op["operationId"] = f"{method}_{path}".replace("/", "_").replace("{", "").replace("}", "").replace("$", "op_")
    return {"openapi": "3.0.3",
            "info": {"title": "FKJ-plattformen FHIR R4 API", "version": "4.0.1"},
            "paths": paths}


def openapi_document(fkj) -> dict:
    from fkj.model.validation import RESOURCE_TYPES
    return _document(tuple(sorted(RESOURCE_TYPES)))
