"""Export jobs: state in ``bulk_export_job`` (so status survives across requests), the work in
a daemon thread of the server process, the files under the export directory.

Who owns a job (:func:`owner_of`): the principal that started it — the same person or
system (kind, subject, HPR number, fødselsnummer, fhirUser) through the same client, in the
same tenant and context (launch patient, unit, organisation, roles). Not the token itself:
a SMART Backend Services client gets a new token every few minutes and must poll and
download an export that outlives it. Not the scopes either: those are checked on every
status request and download for each file's type (:mod:`fkj.bulk.routes`), so a narrower
token of the owner gets only what it may read. Tokens that share all of these (``fkj
token`` gives every token the subject and client ``fkj-cli``) are one owner, told apart
only by their scopes.

Settings: ``FKJ_EXPORT_DIR`` (default ``./fkj-data/exports``; ``services.extras
["bulk_export_dir"]`` overrides it) and ``FKJ_EXPORT_TTL`` seconds (default 3600) after
completion before status and files expire.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import insert, select, update

from fkj.bulk.exporter import ExportRequest, run_export
from fkj.bulk.tables import bulk_export_job
from fkj.store.backend import now_us, scope

log = logging.getLogger("fkj.bulk")
_threads: dict[str, threading.Thread] = {}


def export_dir(services) -> Path:
    d = services.extras.get("bulk_export_dir") or os.environ.get("FKJ_EXPORT_DIR") \
        or Path("fkj-data") / "exports"
    return Path(d)


def ttl_us(services) -> int:
    ttl = services.extras.get("bulk_export_ttl") or os.environ.get("FKJ_EXPORT_TTL") or 3600
    return int(float(ttl) * 1_000_000)


@dataclass
class Job:
    id: str
    tenant: str
    status: str
    level: str
    subject: str
    client_id: str | None
    request: str
    params: str
    transaction_time: int
    created: int
    updated: int
    expires: int | None
    progress: str
    manifest: str | None
    directory: str
    owner: str | None = None

    @property
    def expired(self) -> bool:
        return self.expires is not None and now_us() > self.expires

    def owned_by(self, principal) -> bool:
        return self.owner is not None and owner_of(principal) == self.owner


def owner_of(principal) -> str:
    """The owner key of what ``principal`` starts (see the module docstring): a SHA-256 of
    its identity and context, without its scopes and without the token's own identity."""
    p = principal
    who = [p.tenant, p.kind, p.subject, p.client_id, p.hpr_number, p.pid, p.fhir_user,
           p.patient, p.unit, p.organisation, sorted(p.roles)]
    return hashlib.sha256(orjson.dumps(who)).hexdigest()


def get_job(engine, tenant: str, job_id: str) -> Job | None:
    with scope(engine, tenant) as conn:
        row = conn.execute(select(bulk_export_job).where(
            bulk_export_job.c.id == job_id, bulk_export_job.c.tenant == tenant)).first()
    return Job(**row._mapping) if row else None


def _set(engine, tenant: str, job_id: str, only_if_active: bool = False, **values) -> bool:
    c = bulk_export_job.c
    q = update(bulk_export_job).where(c.id == job_id, c.tenant == tenant)
    if only_if_active:
        q = q.where(c.status.in_(("queued", "running")))
    with scope(engine, tenant, write=True) as conn:
        return conn.execute(q.values(updated=now_us(), **values)).rowcount == 1


def start(services, principal, tenant: str, req: ExportRequest, request_url: str) -> Job:
    """Record the job and start its worker thread."""
    purge_expired(services, tenant)
    job_id = uuid.uuid4().hex
    directory = export_dir(services) / tenant / job_id
    now = now_us()
    values = dict(id=job_id, tenant=tenant, status="queued", level=req.level,
                  subject=principal.subject[:200],
                  client_id=principal.client_id[:200] if principal.client_id else None,
                  owner=owner_of(principal),
                  request=request_url, params=req.to_json(),
                  transaction_time=req.transaction_time, created=now, updated=now,
                  expires=None, progress="queued", manifest=None,
                  directory=str(directory.resolve()))
    with scope(services.engine, tenant, write=True) as conn:
        conn.execute(insert(bulk_export_job).values(**values))
    t = threading.Thread(target=_work, args=(services, principal, tenant, job_id, req,
                                             directory, request_url),
                         name=f"fkj-export-{job_id[:8]}", daemon=True)
    _threads[job_id] = t
    t.start()
    return Job(**values)


def _work(services, principal, tenant, job_id, req, directory: Path, request_url) -> None:
    from fkj.repository.repository import Repository

    engine = services.engine
    try:
        if not _set(engine, tenant, job_id, only_if_active=True, status="running",
                    progress="started"):
            return
        repo = Repository(services, principal, tenant)
        done = {"n": 0, "pages": 0}
        state = {"cancelled": False}

        def on_progress(n: int, rtype: str) -> None:
            done["n"] += n
            done["pages"] += 1
            _set(engine, tenant, job_id, progress=f"{done['n']} resources ({rtype})")

        def cancelled() -> bool:
            if not state["cancelled"]:
                job = get_job(engine, tenant, job_id)
                state["cancelled"] = job is None or job.status == "cancelled"
            return state["cancelled"]

        result = run_export(repo, req, directory, job=job_id, on_progress=on_progress,
                            cancelled=cancelled)
        if result.cancelled:
            shutil.rmtree(directory, ignore_errors=True)
            return
        base = f"{services.settings.base_url}/fhir/{tenant}/$export-status/{job_id}"
        manifest = result.manifest(lambda name: f"{base}/{name}", request_url)
        if not _set(engine, tenant, job_id, only_if_active=True, status="complete",
                    progress=f"complete: {result.total} resources",
                    manifest=orjson.dumps(manifest).decode(),
                    expires=now_us() + ttl_us(services)):
            shutil.rmtree(directory, ignore_errors=True)  # cancelled meanwhile
    except Exception as e:  # noqa: BLE001 - the job fails, the server goes on
        log.exception("export %s failed", job_id)
        _set(engine, tenant, job_id, status="failed", progress="failed",
             manifest=f"{type(e).__name__}: {e}", expires=now_us() + ttl_us(services))
    finally:
        _threads.pop(job_id, None)


def cancel(services, job: Job) -> None:
    """Mark the job cancelled (the worker stops at its next page) and remove its files."""
    _set(services.engine, job.tenant, job.id, status="cancelled", progress="cancelled",
         expires=now_us())
    shutil.rmtree(job.directory, ignore_errors=True)


def expire(services, job: Job) -> None:
    shutil.rmtree(job.directory, ignore_errors=True)
    if job.status != "expired":
        _set(services.engine, job.tenant, job.id, status="expired", progress="expired")


def purge_expired(services, tenant: str) -> None:
    c = bulk_export_job.c
    with scope(services.engine, tenant) as conn:
        rows = conn.execute(select(bulk_export_job).where(
            c.tenant == tenant, c.expires.is_not(None), c.expires < now_us(),
            c.status.in_(("complete", "failed", "cancelled")))).all()
    for row in rows:
        expire(services, Job(**row._mapping))


def wait(job_id: str, timeout: float | None = None) -> None:
    """Wait for a job's thread (tests, shutdown)."""
    t = _threads.get(job_id)
    if t is not None:
        t.join(timeout)
