"""The audit log: an AuditEvent (IHE BALP) for every access, change and denial, stored
append-only and hash-chained per tenant.

Where to call what:

* **writes** — inside the write transaction, after the unit of work's last flush and just
  before commit: ``append_in_transaction(conn, tenant, [build_audit_event(...)])``. The write
  and its audit commit or roll back together.
* **reads, searches, history, operations, and every denial or failure** (a failed write's
  transaction rolls back, so its audit must not be inside it) — before the response is sent:
  ``AuditWriter.record(tenant, events)`` (or ``await record_async``), which blocks until the
  events are written (the server's audit journal, chained moments later; or committed, in
  database mode) and raises :class:`AuditUnavailable` (503) otherwise.
* before reading the log in-process: ``flush_audit(services)`` (the process's journaled
  records into the chain).
* ``verify_chain(engine, tenant)`` and ``search_audit(engine, tenant, ...)`` for
  ``fkj audit verify`` / ``fkj audit search``.
"""

from fkj.security.audit.chain import (
    VerifyResult,
    append_in_transaction,
    record_hash,
    verify_chain,
)
from fkj.security.audit.events import build_audit_event, canonical
from fkj.security.audit.hooks import write_events
from fkj.security.audit.query import search_audit
from fkj.security.audit.tables import GENESIS_HASH, audit_head, audit_log, audit_patient
from fkj.security.audit.writer import AuditUnavailable, AuditWriter

__all__ = [
    "GENESIS_HASH", "AuditUnavailable", "AuditWriter", "VerifyResult", "append_in_transaction",
    "audit_head", "audit_log", "audit_patient", "build_audit_event", "canonical",
    "record_hash", "search_audit", "verify_chain", "write_events",
]


def flush_audit(services) -> None:
    """Chain the records this process has written so far (no-op without a journal), so a
    reader of the log sees every access made through this process."""
    writer = services.extras.get("audit_writer")
    if writer is not None:
        writer.flush()


def record_access(services, tenant: str, principal, *, subtype: str, resources: list[str],
                  patients: list[str], action: str = "R", outcome: str = "0",
                  purpose: str | None = None, description: str | None = None) -> None:
    """Audit an access that does not go through an HTTP response (export files, subscription
    payloads, federated overview items): blocks until committed; raises
    :class:`AuditUnavailable` (the access must then not happen). No-op when the audit log is
    not wired (``services.extras["audit_writer"]`` absent) or switched off."""
    writer = services.extras.get("audit_writer")
    if writer is None:
        return
    writer.record(tenant, [build_audit_event(
        principal, action=action, subtype=subtype, resources=resources, patients=patients,
        outcome=outcome, purpose=purpose, description=description)])


def record_export_page(services, tenant: str, principal, job: str | None,
                       rows: list[tuple[str, str]]) -> None:
    """Audit one page of a bulk export: ``rows`` are (``Type/id``, resource JSON text). One
    AuditEvent (subtype ``$export``, action R) lists the resources compactly and every patient
    they belong to, so each patient's "who has accessed my information" shows the export.
    Raises :class:`AuditUnavailable` if it cannot be committed (the export then fails)."""
    writer = services.extras.get("audit_writer")
    if writer is None or not rows:
        return
    from fkj.security.audit.events import add_compact_entities as _add_compact_entities
    event = build_audit_event(principal, action="R", subtype="$export", resources=[],
                              patients=patients_in(rows), outcome="0",
                              description=f"bulk export job {job}" if job else "fkj export")
    _add_compact_entities(event, [ref for ref, _ in rows])
    writer.record(tenant, [event])


def patients_in(rows) -> list[str]:
    """Every Patient of ``rows`` ((``Type/id``, JSON text or bytes)): the Patients themselves
    and the patients each resource concerns — :func:`fkj.repository.patients.patients_in`,
    the answer the access policy decides on."""
    from fkj.repository.patients import patients_in as _patients_in
    return _patients_in(rows)


def import_batch_events(principal, created: list[tuple[str, object]],
                        updated: list[tuple[str, object]], description: str) -> list[dict]:
    """The AuditEvents of one committed batch of a bulk import (``fkj import``): one for the
    created resources (action C) and one for the updated (action U), subtype ``$import``,
    resources listed compactly, every patient they belong to named — so the import appears in
    each patient's "who has accessed my information". Appended in the batch's own
    transaction (:func:`append_in_transaction`): the batch and its audit commit together."""
    from fkj.security.audit.events import add_compact_entities as _add_compact_entities
    events = []
    for action, rows in (("C", created), ("U", updated)):
        if not rows:
            continue
        event = build_audit_event(principal, action=action, subtype="$import", resources=[],
                                  patients=patients_in(rows), outcome="0",
                                  description=description)
        _add_compact_entities(event, [ref for ref, _ in rows])
        events.append(event)
    return events


__all__ += ["flush_audit", "import_batch_events", "patients_in", "record_access",
            "record_export_page"]
