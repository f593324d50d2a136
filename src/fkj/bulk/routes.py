"""HTTP routes of bulk export outside the FHIR router: the status URL and the files.

- ``GET    /fhir/{tenant}/$export-status/{job}``: 202 + ``X-Progress`` while running, 200 +
  the completion manifest, 500 + OperationOutcome if the job failed;
- ``DELETE /fhir/{tenant}/$export-status/{job}``: cancel, remove the files → 202;
- ``GET    /fhir/{tenant}/$export-status/{job}/{file}``: an NDJSON file.

All need a token of the same principal (subject and client) that started the export: none or
an invalid one → 401, another principal → 403. Expired jobs → 410, unknown ones → 404.
Wire with ``fkj.extra_routes.extend(export_routes(fkj))`` before ``create_app``.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from fkj.errors import FhirError, Forbidden, Gone, NotFound

ROUTE_NAMES = ("fkj-bulk-export-status", "fkj-bulk-export-file")
_FILE = re.compile(r"^[A-Za-z]{1,64}\.ndjson$")
NDJSON = "application/fhir+ndjson"


def export_routes(fkj) -> list[Route]:
    from fkj.app import to_response
    from fkj.bulk import jobs
    from fkj.fhir.outcomes import outcome_for

    def _job(request: Request):
        tenant = request.path_params["tenant"]
        fkj.services.tenants.get(tenant)
        principal = fkj.principal_for({k.lower(): v for k, v in request.headers.items()},
                                      tenant)
        job = jobs.get_job(fkj.services.engine, tenant, request.path_params["job"])
        if job is None or job.status == "cancelled":
            raise NotFound("no such export job")
        if not job.owned_by(principal):
            raise Forbidden("only the client that started this export may see it")
        if job.expired or job.status == "expired":
            jobs.expire(fkj.services, job)
            raise Gone("this export has expired; start a new one")
        return job

    def status_sync(request: Request) -> Response:
        try:
            job = _job(request)
            if request.method == "DELETE":
                jobs.cancel(fkj.services, job)
                return Response(status_code=202)
            if job.status in ("queued", "running"):
                return Response(status_code=202, headers={
                    "X-Progress": job.progress[:100] or job.status, "Retry-After": "1"})
            if job.status == "failed":
                from fkj.errors import Issue
                from fkj.fhir.outcomes import operation_outcome
                return Response(orjson.dumps(operation_outcome(
                    [Issue("fatal", "exception", f"the export failed: {job.manifest}")])),
                    status_code=500, media_type="application/fhir+json")
            headers = {}
            if job.expires:
                from email.utils import formatdate
                headers["Expires"] = formatdate(job.expires / 1e6, usegmt=True)
            return Response(job.manifest or "{}", status_code=200, headers=headers,
                            media_type="application/json")
        except FhirError as e:
            return to_response(outcome_for(e))

    def file_sync(request: Request) -> Response:
        try:
            job = _job(request)
            name = request.path_params["file"]
            path = Path(job.directory) / name
            if job.status != "complete" or not _FILE.match(name) or not path.is_file():
                raise NotFound(f"no file {name} in this export")
            return FileResponse(path, media_type=NDJSON)
        except FhirError as e:
            return to_response(outcome_for(e))

    async def status(request: Request) -> Response:
        return await run_in_threadpool(status_sync, request)

    async def file(request: Request) -> Response:
        return await run_in_threadpool(file_sync, request)

    return [
        Route("/fhir/{tenant}/$export-status/{job}", status, methods=["GET", "DELETE"],
              name=ROUTE_NAMES[0]),
        Route("/fhir/{tenant}/$export-status/{job}/{file}", file, methods=["GET"],
              name=ROUTE_NAMES[1]),
    ]


def ensure_export_routes(fkj) -> None:
    """Add the routes unless they are there already (idempotent; for tests and wiring)."""
    if not any(getattr(r, "name", None) == ROUTE_NAMES[0] for r in fkj.extra_routes):
        fkj.extra_routes.extend(export_routes(fkj))
