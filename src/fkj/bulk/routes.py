"""HTTP routes of bulk export outside the FHIR router: the status URL and the files.

- ``GET    /fhir/{tenant}/$export-status/{job}``: 202 + ``X-Progress`` while running, 200 +
  the completion manifest, 500 + OperationOutcome if the job failed;
- ``DELETE /fhir/{tenant}/$export-status/{job}``: cancel, remove the files → 202;
- ``GET    /fhir/{tenant}/$export-status/{job}/{file}``: an NDJSON file.

Every request is checked twice (see :mod:`fkj.bulk.jobs` for who owns a job):

1. the token's principal must be the job's owner (none or an invalid token → 401, anyone
   else → 403);
2. its scopes must allow reading the file's resource type *now* (``search-type`` through
   the repository's authorize hooks): a narrower token of the owner gets 403 for
   ``Observation.ndjson`` when it may not read Observation, and the manifest it polls lists
   only the files it may download. ``error.ndjson`` (OperationOutcomes) needs only (1).

Every refusal of an authenticated caller is audited (``$export``, outcome 4); what a file
holds was audited page by page, to the owner, when it was written (only the owner can fetch
it).
Expired jobs → 410, unknown ones → 404. Wire with ``fkj.extra_routes.extend(export_routes(
fkj))`` before ``create_app``.
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
ERROR_FILE = "error.ndjson"
NDJSON = "application/fhir+ndjson"


def file_type(name: str) -> str | None:
    """The resource type an export file holds (None for the error file)."""
    return None if name == ERROR_FILE else name[:-len(".ndjson")]


def may_read(services, principal, tenant: str, rtype: str) -> bool:
    """Whether ``principal`` may read resources of ``rtype`` (its scopes, through the same
    authorize hooks a search of the type passes)."""
    from fkj.repository.repository import Repository
    try:
        Repository(services, principal, tenant).authorize("search-type", rtype)
    except Forbidden:
        return False
    return True


def export_routes(fkj) -> list[Route]:
    from fkj.app import to_response
    from fkj.bulk import jobs
    from fkj.fhir.outcomes import outcome_for
    from fkj.security.audit import record_access

    services = fkj.services

    def audit(tenant, principal, job_id: str, what: str, outcome: str) -> None:
        record_access(services, tenant, principal, subtype="$export", resources=[],
                      patients=[], outcome=outcome,
                      description=f"bulk export job {job_id}: {what}"[:1000])

    def _job(request: Request):
        tenant = request.path_params["tenant"]
        services.tenants.get(tenant)
        principal = fkj.principal_for({k.lower(): v for k, v in request.headers.items()},
                                      tenant)
        job_id = request.path_params["job"]
        job = jobs.get_job(services.engine, tenant, job_id)
        if job is None or job.status == "cancelled":
            raise NotFound("no such export job")
        if not job.owned_by(principal):
            audit(tenant, principal, job_id, f"{request.method} refused: not the owner", "4")
            raise Forbidden("only the one who started this export, through the same client, "
                            "may see it")
        if job.expired or job.status == "expired":
            jobs.expire(services, job)
            raise Gone("this export has expired; start a new one")
        return job, principal

    def _manifest_for(job, principal) -> bytes:
        """The manifest without the files the caller's scopes do not let it read."""
        manifest = orjson.loads(job.manifest or "{}")
        outputs = manifest.get("output") or []
        manifest["output"] = [o for o in outputs
                              if may_read(services, principal, job.tenant, o.get("type"))]
        return orjson.dumps(manifest)

    def status_sync(request: Request) -> Response:
        try:
            job, principal = _job(request)
            if request.method == "DELETE":
                jobs.cancel(services, job)
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
            return Response(_manifest_for(job, principal), status_code=200, headers=headers,
                            media_type="application/json")
        except FhirError as e:
            return to_response(outcome_for(e))

    def file_sync(request: Request) -> Response:
        try:
            job, principal = _job(request)
            name = request.path_params["file"]
            path = Path(job.directory) / name
            if job.status != "complete" or not _FILE.match(name) or not path.is_file():
                raise NotFound(f"no file {name} in this export")
            rtype = file_type(name)
            if rtype is not None and not may_read(services, principal, job.tenant, rtype):
                audit(job.tenant, principal, job.id, f"download of {name} refused: the "
                      f"token's scopes do not allow reading {rtype}", "4")
                raise Forbidden(f"the token's scopes do not allow reading {rtype}, so it may "
                                f"not download {name}")
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
