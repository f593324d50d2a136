"""search (GET and POST ``_search``), with result shaping (_summary, _elements)."""

from __future__ import annotations

import orjson

from fkj.fhir.bundle_builder import bundle_text, entry_text, link
from fkj.fhir.outcomes import operation_outcome
from fkj.fhir.request import FhirRequest, FhirResponse
from fkj.errors import Issue
from fkj.search.summary import shape


def search(req: FhirRequest, repo, rtype: str | None, base: str, settings,
           params: list[tuple[str, str]] | None = None,
           compartment: tuple[str, str] | None = None) -> FhirResponse:
    params = list(req.query if params is None else params)
    if compartment is not None:
        from fkj.search.compartments import compartment_criteria
        params = compartment_criteria(compartment, rtype) + params
    result = repo.search(rtype, params, strict=req.strict,
                         default_count=settings.default_page_size,
                         max_count=settings.max_page_size)
    path = f"{base}/fhir/{req.tenant}/" + (
        f"{compartment[0]}/{compartment[1]}/{rtype}" if compartment else (rtype or ""))
    shown = [(k, v) for k, v in req.query if k != "_cursor"]
    links = [("self", link(path, req.query))]
    if result.next_cursor:
        links.append(("next", link(path, shown + [("_cursor", result.next_cursor)])))
    summary, elements = _shaping(req.query)
    entries = []
    if summary != "count":
        for row in result.matches:
            entries.append(entry_text(f"{base}/fhir/{req.tenant}/{row.type}/{row.id}",
                                      shape(row.content, summary, elements), search_mode="match"))
        for row in result.includes:
            entries.append(entry_text(f"{base}/fhir/{req.tenant}/{row.type}/{row.id}",
                                      shape(row.content, summary, elements),
                                      search_mode="include"))
    if result.warnings:
        oo = operation_outcome([Issue("warning", "not-supported", w) for w in result.warnings])
        entries.append('{"resource":' + orjson.dumps(oo).decode() + ',"search":{"mode":"outcome"}}')
    shown = [(row.type, row.id, row.version, row.content)
             for rows in (result.matches, result.includes) for row in rows] \
        if summary != "count" else []
    return FhirResponse(200, bundle_text("searchset", entries, total=result.total, links=links),
                        shown=shown)


def _shaping(query):
    summary = elements = None
    for k, v in query:
        if k == "_summary" and v != "false":
            summary = v
        elif k == "_elements":
            elements = [e.strip() for e in v.split(",") if e.strip()]
    return summary, elements
