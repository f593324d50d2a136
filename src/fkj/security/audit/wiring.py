"""Installs the audit log into every request path, through hooks only.

``register_audit(fkj)`` (idempotent) installs:

* ``hooks.authorize`` (first in the list) — :func:`guard`: AuditEvent resources are not
  writable, deletable or readable through the REST API (writes → 405, reads → 403); the log is
  read only through ``$tilgangslogg``. It also remembers the request's repository (per thread)
  so the response hook can see the policy's purpose of use (``repo.purpose``).
* ``hooks.before_commit`` — :func:`audit_writes`: one AuditEvent per write, appended inside the
  write transaction (a failing append rolls the write back; 503).
* ``fkj.after_response`` — :func:`audit_response`: reads, searches, history, operations,
  Bundle GET entries and every failure or denial (401/403/policy), written through the
  process-wide :class:`~fkj.security.audit.writer.AuditWriter`
  (``fkj.services.extras["audit_writer"]``; by default into the process's audit journal,
  chained in batches, see :func:`server_writer`) before the response is sent; if the record
  cannot be written the response is replaced by 503.

``FKJ_AUDIT=0`` (benchmarks only) leaves out the audit hooks (the append-only guard and the
operation stay).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
from sqlalchemy.exc import DBAPIError, IntegrityError

from fkj.errors import FhirError, Forbidden, MethodNotAllowed
from fkj.security.audit.chain import append_in_transaction
from fkj.security.audit.events import INTERACTIONS
from fkj.security.audit.facts import EventFacts
from fkj.security.audit.hooks import write_events
from fkj.security.audit.writer import AuditUnavailable, AuditWriter
from fkj.types import Principal

log = logging.getLogger(__name__)

_REGISTERED = "audit_registered"
_WRITE_INTERACTIONS = {"create", "update", "patch", "delete", "update-check", "delete-check"}
_READ_INTERACTIONS = {"read", "vread", "search-type", "history-instance", "history-type",
                      "history"}
#: top-level elements that name a resource's patient (cheap; no index extraction)
_METHOD_ACTION = {"GET": ("R", "read"), "HEAD": ("R", "read"), "POST": ("C", "create"),
                  "PUT": ("U", "update"), "PATCH": ("U", "patch"), "DELETE": ("D", "delete")}
_SUBTYPE_ACTION = {"read": "R", "vread": "R", "history-instance": "R", "history-type": "R",
                   "history-system": "R", "search-type": "E", "search-system": "E",
                   "create": "C", "update": "U", "patch": "U", "delete": "D",
                   "transaction": "E", "batch": "E"}
_local = threading.local()


def audit_enabled() -> bool:
    return os.environ.get("FKJ_AUDIT", "1") != "0"


def register_audit(fkj, *, enabled: bool | None = None) -> AuditWriter:
    """Wire the audit log into ``fkj`` (an :class:`~fkj.app.FkjApp`); idempotent.

    Returns the process-wide :class:`AuditWriter` (also ``fkj.services.extras["audit_writer"]``).
    """
    services = fkj.services
    extras = services.extras
    if extras.get(_REGISTERED):
        return extras["audit_writer"]
    enabled = audit_enabled() if enabled is None else enabled
    writer = extras.get("audit_writer")
    if writer is None:
        writer = server_writer(services.engine, enabled=enabled)
        extras["audit_writer"] = writer
    if enabled:
        register_write_audit(services)
        if audit_response not in fkj.after_response:
            fkj.after_response.append(audit_response)
    elif guard not in services.hooks.authorize:
        services.hooks.authorize.insert(0, guard)
    from fkj.fhir import operations
    operations.OPERATIONS.setdefault("tilgangslogg", "tilgangslogg")
    extras[_REGISTERED] = True
    return writer


def register_write_audit(services) -> None:
    """The hooks every path that writes through a repository needs (idempotent): the
    append-only guard (first) and one AuditEvent per write in its transaction. A server
    gets them from :func:`register_audit`, a command-line tool from
    :func:`fkj.security.audit.operator.audited_services`."""
    hooks = services.hooks
    if guard not in hooks.authorize:
        hooks.authorize.insert(0, guard)
    if audit_writes not in hooks.before_commit:
        hooks.before_commit.append(audit_writes)


def server_writer(engine, *, enabled: bool = True) -> AuditWriter:
    """The audit writer of a server process, as the environment asks:
    ``FKJ_AUDIT_READS`` = ``journal`` (default: read records are written to this process's
    audit journal before the answer and chained in batches) or ``database`` (committed to
    the chain before the answer); ``FKJ_AUDIT_READ_SYNC`` = ``normal`` (default) or ``full``
    (on disk before the answer); ``FKJ_AUDIT_JOURNAL_DIR`` (where journals live). It writes
    the chains' checkpoints (``FKJ_AUDIT_CHECKPOINT_*``, fkj.security.audit.checkpoints)."""
    from fkj.security.audit.journal import AuditJournal, database_identity, default_directory

    reads = os.environ.get("FKJ_AUDIT_READS", "journal")
    sync = os.environ.get("FKJ_AUDIT_READ_SYNC", "normal")
    if reads not in ("journal", "database"):
        raise ValueError(f"FKJ_AUDIT_READS must be 'journal' or 'database', not {reads!r}")
    if sync not in ("normal", "full"):
        raise ValueError(f"FKJ_AUDIT_READ_SYNC must be 'normal' or 'full', not {sync!r}")
    journal = None
    if reads == "journal":
        url = engine.url.render_as_string(hide_password=False)
        journal = AuditJournal(default_directory(url), database_identity(url), sync=sync)
    from fkj.security.audit.checkpoints import Checkpointer
    return AuditWriter(engine, enabled=enabled, sync=sync, journal=journal,
                       checkpointer=Checkpointer.for_engine(engine) if enabled else None)


# ------------------------------------------------------------------------------ hooks
def guard(repo, interaction: str, rtype: str | None, resource=None) -> None:
    """authorize hook: the audit log is append-only and read only through $tilgangslogg."""
    _local.repo = repo
    if rtype != "AuditEvent" and not (isinstance(resource, dict)
                                      and resource.get("resourceType") == "AuditEvent"):
        return
    if interaction in _WRITE_INTERACTIONS:
        raise MethodNotAllowed("AuditEvent resources are append-only and written by the "
                               "server itself; they cannot be created, changed or deleted")
    if interaction in _READ_INTERACTIONS:
        raise Forbidden("the audit log is read through $tilgangslogg "
                        "(Patient/{id}/$tilgangslogg or [base]/$tilgangslogg)")


def purpose_of(repo, principal) -> str | None:
    """Purpose of use: the policy's (``repo.purpose``, e.g. ``"ETREAT BTG"``), else the
    principal's."""
    return (getattr(repo, "purpose", None) or getattr(principal, "purpose_of_use", None)
            or None)


def _reason_of(repo, principal) -> str | None:
    for obj in (repo, principal):
        for name in ("purpose_reason", "break_glass_reason", "btg_reason"):
            v = getattr(obj, name, None)
            if v:
                return str(v)
    return None


def audit_writes(repo, conn, operations) -> None:
    """before_commit hook: the writes of the transaction and their audit commit together."""
    if not operations:
        return
    events = write_events(repo.principal, operations, purpose=purpose_of(repo, repo.principal))
    reason = _reason_of(repo, repo.principal)
    if reason:
        for e in events:
            e["outcomeDesc"] = reason
    try:
        append_in_transaction(conn, repo.tenant, events)
    except (FhirError, IntegrityError):
        raise
    except Exception as e:  # noqa: BLE001 - the write must not commit unaudited
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            raise  # the database went away, and the write with it: answered 503 by the app
        log.error("audit append for tenant %s failed: %s", repo.tenant, e)
        raise AuditUnavailable(f"the change could not be audited, so it was not made: {e}") from e
    repo._fkj_audited_writes = True  # noqa: SLF001


def audit_response(fkj, req, principal, response, error):
    """after_response hook: record the access (or failure) before the response is sent.
    Returns the writer's future; the app waits for it (or awaits it) before answering."""
    repo = getattr(_local, "repo", None)
    _local.repo = None
    if repo is not None and principal is not None and repo.principal is not principal:
        repo = None
    try:
        events = request_events(fkj, req, principal, response, error, repo)
    except AuditUnavailable:
        raise
    except Exception:  # noqa: BLE001 - never lose the record over a parsing problem
        log.exception("building the audit record of %s %s failed", req.method,
                      "/".join(req.segments))
        events = [_minimal_event(req, principal, response, error, repo)]
    if events:
        writer: AuditWriter = fkj.services.extras["audit_writer"]
        return writer.submit(req.tenant, events, lead=None if _on_event_loop() else True)
    return None


def _on_event_loop() -> bool:
    """Whether this runs on the thread of a running asyncio loop (fkj.app answers point
    reads there): the commit may then be handed to the writer's committer thread."""
    import asyncio
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# ------------------------------------------------------------------------------ building
def classify(method: str, segments: list[str]) -> tuple[str, str, str | None, str | None] | None:
    """(subtype, action, resource type, id) of a REST request, as the router sees it;
    None for requests that touch no data (``metadata``)."""
    s, m, n = segments, method, len(segments)
    if n == 0:
        if m == "POST":
            return "bundle", "E", None, None
        return "search-system", "E", None, None
    head = s[0]
    if head == "metadata" and n == 1:
        return None
    if head == "_history" and n == 1:
        return "history-system", "R", None, None
    if head == "_search" and n == 1:
        return "search-system", "E", None, None
    if head.startswith("$"):
        return head, "E", None, None
    if n == 1:
        if m in ("GET", "HEAD"):
            return "search-type", "E", head, None
        action, sub = _METHOD_ACTION.get(m, ("E", "operation"))
        return sub, action, head, None
    second = s[1]
    if n == 2 and second == "_search":
        return "search-type", "E", head, None
    if n == 2 and second == "_history":
        return "history-type", "R", head, None
    if second.startswith("$"):
        return second, "E", head, None
    if n == 2:
        action, sub = _METHOD_ACTION.get(m, ("E", "operation"))
        return sub, action, head, second
    third = s[2]
    if third == "_history":
        return ("history-instance" if n == 3 else "vread"), "R", head, second
    if third.startswith("$"):
        return third, "E", head, second
    if n == 3:  # compartment search Patient/x/Observation
        return "search-type", "E", third, None
    action, sub = _METHOD_ACTION.get(m, ("E", "operation"))
    return sub, action, head, None


def request_events(fkj, req, principal, response, error, repo=None) -> list[dict]:
    kind = classify(req.method, req.segments)
    if kind is None:
        return []
    subtype, action, rtype, rid = kind
    status = response.status if response is not None else (error.status if error else 500)
    principal = principal or _anonymous(req.tenant)
    purpose = purpose_of(repo, principal)
    failed = error is not None or status >= 400
    if subtype == "bundle":
        return _bundle_events(fkj, req, principal, response, error, repo, purpose, failed, status)
    if failed:
        return [_failure_event(req, principal, subtype, action, rtype, rid, status, error,
                               purpose, body=req.body,
                               refused=getattr(repo, "refused_patients", ()))]
    if action in ("C", "U", "D") and getattr(repo, "_fkj_audited_writes", False):
        return []  # audited in the write transaction (before_commit)
    resources, patients, query = [], [], None
    if subtype == "$tilgangslogg":
        if rid:
            patients.append(f"Patient/{rid}")
        for k, v in req.query:
            if k == "patient" and v:
                patients.append(v if "/" in v else f"Patient/{v}")
    else:
        if rtype == "Patient" and rid:
            patients.append(f"Patient/{rid}")
        if len(req.segments) == 3 and req.segments[0] == "Patient" and subtype == "search-type":
            patients.append(f"Patient/{req.segments[1]}")
        shown = getattr(response, "shown", None)
        if shown is not None:  # read, vread, search: the rows, without parsing the body
            resources.extend(f"{t}/{i}/_history/{v}" for t, i, v, _ in shown)
            from fkj.security.audit import patients_in
            patients.extend(patients_in([(f"{t}/{i}", c) for t, i, _, c in shown]))
        else:
            body = _json(response.body) if response is not None else None
            _collect(body, resources, patients,
                     local_base=f"{fkj.settings.base_url.rstrip('/')}/fhir/{req.tenant}/")
        if not resources and rtype and rid and not subtype.startswith("$"):
            resources.append(f"{rtype}/{rid}")  # e.g. 304 Not Modified
        if subtype.startswith("search"):
            query = _query_text(req)
    return [_event(principal, action=action, subtype=subtype, resources=resources,
                   patients=patients, outcome="0", purpose=purpose, query=query,
                   description=_reason_of(repo, principal))]


def _bundle_events(fkj, req, principal, response, error, repo, purpose, failed, status):
    body = req.body if isinstance(req.body, dict) else {}
    btype = body.get("type") if body.get("type") in ("batch", "transaction") else "batch"
    if failed:
        return [_failure_event(req, principal, btype, "E", None, None, status, error, purpose)]
    entries_in = body.get("entry") or []
    has_get = any(isinstance(e, dict) and isinstance(e.get("request"), dict)
                  and e["request"].get("method") in ("GET", "HEAD") for e in entries_in)
    if btype == "transaction" and not has_get:
        return []
    out_body = _json(response.body) if response is not None else None
    entries_out = (out_body or {}).get("entry") or []
    base = f"{fkj.settings.base_url}/fhir/{req.tenant}/"
    events = []
    for e_in, e_out in zip(entries_in, entries_out):
        try:
            request = e_in["request"]
            method, url = request["method"], request["url"]
        except (TypeError, KeyError):
            continue
        if url.startswith(base):
            url = url[len(base):]
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        kind = classify(method, segments) or ("read", "R", None, None)
        subtype, action, rtype, rid = kind
        if subtype == "bundle":
            subtype, action = "batch", "E"
        resp = (e_out or {}).get("response") or {}
        try:
            entry_status = int(str(resp.get("status", "200")).split()[0])
        except ValueError:
            entry_status = 200
        if entry_status >= 400:
            if method in ("GET", "HEAD") or btype == "batch":
                desc = _outcome_text(resp.get("outcome"))
                events.append(_failure_event(None, principal, subtype, action, rtype, rid,
                                             entry_status, None, purpose, description=desc,
                                             body=e_in.get("resource")))
            continue
        if method not in ("GET", "HEAD"):
            continue  # successful writes are audited in their transaction
        resources, patients = [], []
        if rtype == "Patient" and rid:
            patients.append(f"Patient/{rid}")
        _collect((e_out or {}).get("resource"), resources, patients)
        if not resources and rtype and rid and not subtype.startswith("$"):
            resources.append(f"{rtype}/{rid}")
        query = None
        if subtype.startswith("search"):
            q = parse_qsl(parts.query, keep_blank_values=True)
            query = (f"{rtype}?" if rtype else "?") + urlencode(q)
        events.append(_event(principal, action=action, subtype=subtype, resources=resources,
                             patients=patients, outcome="0", purpose=purpose, query=query))
    return events


def _failure_event(req, principal, subtype, action, rtype, rid, status, error, purpose, *,
                   description=None, body=None, refused=()) -> EventFacts:
    resources, patients = [], list(refused)
    if rtype and rid:
        resources.append(f"{rtype}/{rid}")
        if rtype == "Patient":
            patients.append(f"Patient/{rid}")
    if isinstance(body, dict) and body.get("resourceType") not in (None, "Bundle"):
        _patients_of(body, patients)
    if req is not None and len(req.segments) == 3 and req.segments[0] == "Patient":
        patients.append(f"Patient/{req.segments[1]}")
    if description is None and error is not None:
        description = getattr(error, "diagnostics", None) or str(error)
    description = f"{status}: {description}" if description else str(status)
    return _event(principal, action=action, subtype=subtype, resources=resources,
                  patients=patients, outcome="4" if status < 500 else "8", purpose=purpose,
                  description=description[:1000])


def _minimal_event(req, principal, response, error, repo) -> EventFacts:
    principal = principal or _anonymous(req.tenant)
    status = response.status if response is not None else 500
    action, sub = _METHOD_ACTION.get(req.method, ("E", "operation"))
    return _event(principal, action=action, subtype=sub, resources=[], patients=[],
                  outcome="0" if status < 400 else "4" if status < 500 else "8",
                  purpose=purpose_of(repo, principal),
                  description=f"{req.method} {'/'.join(req.segments)} ({status})")


def _event(principal, *, action, subtype, resources, patients, outcome, purpose,
           query=None, description=None) -> EventFacts:
    """The record of a request: its facts now, the AuditEvent when it is chained
    (fkj.security.audit.facts)."""
    if subtype not in INTERACTIONS and not subtype.startswith("$"):
        subtype = "operation"
    return EventFacts(principal, action, subtype, resources, patients, outcome, purpose, query,
                      description)


def _anonymous(tenant: str) -> Principal:
    return Principal(kind="client", subject="unauthenticated", tenant=tenant)


def _json(body: Any):
    if body is None:
        return None
    if isinstance(body, dict):
        return body
    if isinstance(body, (str, bytes)):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    return None


def _collect(body, resources: list[str], patients: list[str],
             local_base: str | None = None) -> None:
    """Resources touched and their patients, from a response body (resource or Bundle).

    In a document Bundle (``$oversikt``) the Composition and Provenances are made for the
    answer (not stored) and are left out, and an entry whose ``fullUrl`` lies outside
    ``local_base`` (an item from a national service) is recorded by that absolute URL."""
    if not isinstance(body, dict):
        return
    rt = body.get("resourceType")
    if rt == "Bundle":
        document = body.get("type") == "document"
        for entry in body.get("entry") or ():
            if not isinstance(entry, dict):
                continue
            res = entry.get("resource")
            if isinstance(res, dict):
                if res.get("resourceType") == "OperationOutcome":
                    continue
                if document and res.get("resourceType") in ("Composition", "Provenance"):
                    continue
                full = entry.get("fullUrl")
                if document and local_base and isinstance(full, str) and \
                        full.startswith(("http://", "https://")) and \
                        not full.startswith(local_base):
                    resources.append(full)
                    _patients_of(res, patients)
                    continue
                if res.get("resourceType") == "Bundle":  # a Bundle entry holding a searchset
                    _collect(res, resources, patients)
                    continue
                _add_resource(res, resources, patients)
            elif isinstance(entry.get("request"), dict):  # history: a deletion
                url = entry["request"].get("url") or ""
                if url.count("/") >= 1 and "?" not in url:
                    resources.append("/".join(url.split("/")[:2]))
    elif rt and rt not in ("OperationOutcome", "Parameters"):
        _add_resource(body, resources, patients)


def _add_resource(res: dict, resources: list[str], patients: list[str]) -> None:
    rt, rid = res.get("resourceType"), res.get("id")
    if not rt or not rid:
        return
    vid = (res.get("meta") or {}).get("versionId")
    resources.append(f"{rt}/{rid}/_history/{vid}" if vid else f"{rt}/{rid}")
    _patients_of(res, patients)


def _patients_of(res: dict, patients: list[str]) -> None:
    # the one answer to "whose data is this" (fkj.repository.patients), as the policy's
    from fkj.repository.patients import patient_refs
    patients.extend(patient_refs(res))


def _query_text(req) -> str:
    rtype = None
    if req.segments and not req.segments[0].startswith("_"):
        rtype = req.segments[-1] if len(req.segments) == 3 else req.segments[0]
        if rtype == "_search":
            rtype = req.segments[0]
    return (f"{rtype}?" if rtype else "?") + _urlencode(req.query)


#: a query part that ``urlencode`` leaves as it is, but for its slashes
_PLAIN = re.compile(r"[A-Za-z0-9_.\-~/]*")


def _urlencode(query) -> str:
    """``urlencode(query)``, without its cost for the common names and values that need no
    quoting."""
    parts = []
    for k, v in query:
        if _PLAIN.fullmatch(k) is None or _PLAIN.fullmatch(v) is None:
            return urlencode(list(query))
        parts.append(f"{k}={v}")
    return "&".join(parts).replace("/", "%2F")


def _outcome_text(outcome) -> str | None:
    if isinstance(outcome, dict):
        for issue in outcome.get("issue") or ():
            if isinstance(issue, dict) and issue.get("diagnostics"):
                return str(issue["diagnostics"])
    return None

