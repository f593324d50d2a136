"""Tables of the audit log (SQLAlchemy Core), defined on the shared :data:`metadata`.

``audit_log`` holds one row per AuditEvent, hash-chained per tenant: ``seq`` is gap-free per
tenant and ``hash = sha256(prev_hash ␞ content ␞ seq ␞ tenant)`` (see
:func:`fkj.security.audit.chain.record_hash`). ``audit_head`` holds the chain head per tenant;
its row lock serialises appends within a tenant. ``audit_patient`` indexes the log by patient
(the citizen's "who has looked at my information" and the municipality's follow-up).

The other columns of ``audit_log`` are search copies *derived from* ``content``;
``verify_chain`` re-derives and compares them, so they cannot be edited unnoticed either.

Times are integers, microseconds since the Unix epoch (UTC), as in :mod:`fkj.store.schema`.
The tables are append-only: no code path updates or deletes them, and the migration
(``0004_audit_log``) adds triggers that refuse UPDATE/DELETE (PostgreSQL and SQLite) and, on
PostgreSQL, grants the app role only SELECT and INSERT (plus UPDATE on ``audit_head``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from fkj.store.schema import metadata

#: the hash that the first record of every tenant's chain points back to
GENESIS_HASH = "0" * 64

audit_log = Table(
    "audit_log", metadata,
    Column("tenant", String(4), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    #: AuditEvent.recorded in microseconds since the epoch
    Column("recorded", BigInteger, nullable=False),
    #: space-separated patient references ("Patient/a Patient/b"), for display
    Column("patients", Text, nullable=False, default=""),
    #: the requesting agent: HPR-nummer, fødselsnummer (citizen) or client id
    Column("agent", String(200), nullable=False),
    #: AuditEvent.action: C R U D E
    Column("action", String(1), nullable=False),
    #: the FHIR interaction (read, vread, search-type, create, ... or an operation name)
    Column("subtype", String(64), nullable=False),
    #: space-separated purpose-of-use codes (TREAT, ETREAT, BTG ...)
    Column("purpose", String(100), nullable=False, default=""),
    #: AuditEvent.outcome: 0 success, 4 minor failure (e.g. denied), 8 serious, 12 major
    Column("outcome", String(2), nullable=False),
    #: the AuditEvent as canonical JSON (sorted keys, no whitespace); the hash covers it
    Column("content", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_tenant_recorded", "tenant", "recorded"),
    Index("ix_audit_log_tenant_agent_recorded", "tenant", "agent", "recorded"),
)

#: one row per (record, patient) for lookup by patient
audit_patient = Table(
    "audit_patient", metadata,
    Column("tenant", String(4), primary_key=True),
    Column("patient", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
)

#: chain head per tenant (last sequence number and hash)
audit_head = Table(
    "audit_head", metadata,
    Column("tenant", String(4), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

#: how far each process journal's read records of a tenant are chained (the journal's
#: *watermark*, see :mod:`fkj.security.audit.journal`), moved in the transaction that appends
#: them, so a record is chained exactly once; rows of deleted journals are removed
audit_journal = Table(
    "audit_journal", metadata,
    Column("journal", String(32), primary_key=True),
    Column("tenant", String(4), primary_key=True),
    #: the last position of the journal whose record of this tenant is in the chain
    Column("shipped", BigInteger, nullable=False),
)

#: audit records that could not be stored as written (:mod:`fkj.security.audit.quarantine`):
#: each holds the record's bytes as they were (base64) and their sha256, and has a record
#: in the chain at ``seq`` that names the same sha256 — so the quarantined record is
#: hash-protected like any other. Append-only, like the log.
audit_quarantine = Table(
    "audit_quarantine", metadata,
    Column("tenant", String(4), primary_key=True),
    #: the chain record that stands in the quarantined record's place
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    #: when it was quarantined (µs since the epoch)
    Column("quarantined", BigInteger, nullable=False),
    #: where it came from: the journal and its position there ("" and 0: not a journal's)
    Column("journal", String(32), nullable=False),
    Column("position", BigInteger, nullable=False),
    #: why the database refused it (its characters made storable)
    Column("error", Text, nullable=False),
    #: the record as the database was given it (the journal line), base64
    Column("record", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
)

AUDIT_TABLES = (audit_log, audit_patient, audit_head, audit_journal, audit_quarantine)
