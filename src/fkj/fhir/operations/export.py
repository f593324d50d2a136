"""``$export`` (FHIR Bulk Data Access IG 2.0): kick-off at system (``/$export``), Patient
(``/Patient/$export``) and Group (``/Group/{id}/$export``) level.

Answers 202 with ``Content-Location`` of the status URL; the work runs in a worker thread
(:mod:`fkj.bulk.jobs`); status and files are served by :mod:`fkj.bulk.routes`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fkj.errors import BadRequest, NotFound
from fkj.fhir.outcomes import info_outcome
from fkj.fhir.request import FhirRequest, FhirResponse

DEFINITION = {"name": "export", "levels": ("system", "type", "instance"), "methods": ("GET",),
              "reads": False,
              "url": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}

_SUPPORTED = {"_outputFormat", "_since", "_type", "_typeFilter"}
_KNOWN_UNSUPPORTED = {"_elements", "patient", "includeAssociatedData", "_until"}


def run(req: FhirRequest, repo, app, rtype: str | None, rid: str | None) -> FhirResponse:
    from fkj.bulk import jobs
    from fkj.bulk.exporter import OUTPUT_FORMATS, ExportRequest, parse_since
    from fkj.store.backend import now_us

    if rtype is None:
        level = "system"
    elif rtype == "Patient" and rid is None:
        level = "patient"
    elif rtype == "Group" and rid is not None:
        level = "group"
    else:
        raise NotFound(f"$export is defined for the system, Patient and Group/[id] only")
    repo.authorize("operation", rtype)
    prefer = (req.header("prefer") or "").replace(" ", "").lower()
    if "respond-async" not in prefer:
        raise BadRequest("$export needs the header 'Prefer: respond-async'")
    lenient = "handling=lenient" in prefer
    types: list[str] = []
    filters: list[str] = []
    since = None
    for name, value in req.query:
        if name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise BadRequest(f"_outputFormat {value!r} is not supported; use "
                                 "application/fhir+ndjson", expression="_outputFormat")
        elif name == "_since":
            since = parse_since(value)
        elif name == "_type":
            types += [t.strip() for t in value.split(",") if t.strip()]
        elif name == "_typeFilter":
            filters += [f for f in value.split(",") if f] if "?" not in value else [value]
        elif name in ("_format", "_pretty"):
            continue
        elif not lenient:
            what = "is not supported" if name in _KNOWN_UNSUPPORTED else "is not a parameter of $export"
            raise BadRequest(f"{name} {what} (send Prefer: handling=lenient to ignore it)",
                             expression=name)
    export = ExportRequest(level=level, group_id=rid, types=types or None, since=since,
                           type_filters=filters, transaction_time=now_us())
    export.check(repo)
    path = "/".join(req.segments)
    query = f"?{urlencode(req.query)}" if req.query else ""
    request_url = f"{app.settings.base_url}/fhir/{req.tenant}/{path}{query}"
    job = jobs.start(app.services, repo.principal, req.tenant, export, request_url)
    status_url = f"{app.settings.base_url}/fhir/{req.tenant}/$export-status/{job.id}"
    return FhirResponse(202, info_outcome(f"export started; poll {status_url}"),
                        headers={"Content-Location": status_url})
