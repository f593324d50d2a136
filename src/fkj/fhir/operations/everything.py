"""``Patient/{id}/$everything``: the patient, every resource in the patient's compartment and
the resources they refer to that belong to no patient (Practitioner, Organization, Medication,
Location, …), as a paged searchset Bundle.

Parameters: ``_since`` (only resources changed at or after this instant), ``_type`` (comma
list of resource types), ``_count`` and the ``_cursor`` of the next links. The compartment is
the R4 Patient CompartmentDefinition (fkj.search.compartments); the search engine applies the
``search_filters`` hooks (access policy) to the matches and the included resources alike.
"""

from __future__ import annotations

from fkj.errors import InvalidSearch
from fkj.fhir.bundle_builder import bundle_text, entry_text, link
from fkj.fhir.request import FhirRequest, FhirResponse
from fkj.search.summary import shape

DEFINITION = {"name": "everything", "levels": ("instance",), "methods": ("GET", "POST"),
              "url": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}

_PASSED = ("_count", "_cursor", "_summary", "_elements")


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    from fkj.model.validation import is_known_type
    from fkj.search.compartments import member_types

    if rtype != "Patient":
        from fkj.errors import NotFound
        raise NotFound("$everything is only available on Patient")
    repo.read("Patient", rid)  # 404 / 410 when the patient is not there
    settings = app.settings
    query = list(req.query)
    if isinstance(req.body, dict) and req.body.get("resourceType") == "Parameters":
        for p in req.body.get("parameter") or []:
            if isinstance(p, dict) and p.get("name"):
                v = next((p[k] for k in p if k.startswith("value")), None)
                if v is not None:
                    query.append((p["name"], str(v)))
    params: list[tuple[str, str]] = [("_compartment", f"Patient/{rid}")]
    types: set[str] | None = None
    for k, v in query:
        if k == "_since":
            if not v or v[:2].isalpha():
                raise InvalidSearch(f"_since must be an instant, got {v!r}", expression="_since")
            params.append(("_lastUpdated", "ge" + v))
        elif k == "_type":
            names = [t.strip() for t in v.split(",") if t.strip()]
            for t in names:
                if not is_known_type(t):
                    raise InvalidSearch(f"_type: unknown resource type {t!r}", expression="_type")
            types = set(names) if types is None else types & set(names)
            params.append(("_type", ",".join(names) or "-"))
        elif k in _PASSED:
            params.append((k, v))
        # start/end and other parameters are not supported and do not restrict the result
    params.append(("_include", "*"))
    result = repo.search(None, params, strict=False,
                         default_count=settings.default_page_size,
                         max_count=settings.max_page_size)
    in_compartment = set(member_types("Patient")) | {"Patient"}
    includes = [x for x in result.includes if x.type not in in_compartment
                and (types is None or x.type in types)]
    base = f"{settings.base_url}/fhir/{req.tenant}"
    path = f"{base}/Patient/{rid}/$everything"
    shown = [(k, v) for k, v in query if k != "_cursor"]
    links = [("self", link(path, query))]
    if result.next_cursor:
        links.append(("next", link(path, shown + [("_cursor", result.next_cursor)])))
    summary = next((v for k, v in query if k == "_summary" and v != "false"), None)
    elements = next(([e.strip() for e in v.split(",") if e.strip()]
                     for k, v in query if k == "_elements"), None)
    entries = [entry_text(f"{base}/{x.type}/{x.id}", shape(x.content, summary, elements),
                          search_mode="match") for x in result.matches]
    entries += [entry_text(f"{base}/{x.type}/{x.id}", shape(x.content, summary, elements),
                           search_mode="include") for x in includes]
    return FhirResponse(200, bundle_text("searchset", entries, total=result.total, links=links))
