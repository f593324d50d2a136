"""Quarantine: an audit record the database will not take is kept aside, never in the way.

The shipper chains journaled records many at a time (:mod:`fkj.security.audit.writer`).
When the database refuses a shipment for what is in it (not for being down, locked or
full: :func:`transient`), the shipment is bisected: the halves are chained on their own,
down to the single record the database refuses. That record is first *repaired* — its
AuditEvent rebuilt from its content or facts, storable (:mod:`fkj.security.audit.storable`)
— and if the database still refuses it, and still takes a plain record
(:func:`~fkj.security.audit.chain.probe_append`; otherwise nobody is blamed and the records
wait, as before), it is **quarantined**, in one transaction that

* appends in its place in the chain a record of its own (:func:`stand_in`: action ``E``,
  subtype ``$audit-quarantine``, outcome 8) naming the quarantined record's sha256, its
  journal position, its AuditEvent id and the database's error — so the chain has no hole
  and the quarantined bytes are hash-protected like any record;
* stores the record's bytes as the database was given them (the journal line, base64) and
  their sha256 in ``audit_quarantine`` (append-only, like the log);
* moves the journal's watermark past it.

``fkj audit verify`` checks every stand-in against its quarantined record (and the other
way round) and reports how many records are in quarantine; ``fkj audit quarantine list``
shows them; each quarantine is logged at ERROR. A quarantined record never holds up
another, and never makes the server refuse accesses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import sqlite3
from dataclasses import dataclass

from sqlalchemy import Engine, select

from fkj.security.audit.events import (
    MAX_INDEXED_PATIENT,
    _now_us,
    build_audit_event,
    iso_instant,
)
from fkj.security.audit.storable import storable_text
from fkj.security.audit.tables import audit_quarantine
from fkj.store.backend import scope
from fkj.types import Principal

log = logging.getLogger(__name__)

SUBTYPE = "$audit-quarantine"
#: the agent of stand-in records
AGENT = "fkj-audit"
_ROLE_SECURITY = {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                  "code": "13", "display": "Security Resource"}
_TYPE_OBJECT = {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2", "display": "System Object"}

INSERT = ("INSERT INTO audit_quarantine (tenant, seq, quarantined, journal, position, error, "
          "record, sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")


def transient(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot take records now (down, locked, full,
    cancelled, its connection lost) rather than that it refuses these records."""
    if isinstance(error, (OSError, TimeoutError, sqlite3.OperationalError)):
        return True
    from sqlalchemy import exc
    if isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError,
                          exc.TimeoutError)):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - PostgreSQL support not installed
        return False
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))


def describe(error: BaseException) -> str:
    """The first line of an error, storable and at most 500 characters."""
    text = (str(error).splitlines() or [type(error).__name__])[0]
    return storable_text(f"{type(error).__name__}: {text}"[:500])


@dataclass
class Quarantined:
    """A record to quarantine: its tenant, the bytes the database refused, where they came
    from, and why."""

    tenant: str
    record: bytes
    journal: str
    position: int
    error: str
    #: the parsed row (journal line) or None, for the stand-in's patients and event id
    row: dict | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.record).hexdigest()


def stand_in(q: Quarantined, recorded_us: int | None = None) -> dict:
    """The chain's record in the place of a quarantined one: names its sha256, where it
    came from, its AuditEvent id and the patients it named (those that are references a
    patient could have), so the access still shows in the patient's log."""
    row = q.row or {}
    facts = row.get("f") if isinstance(row.get("f"), dict) else None
    event_id, patients = None, []
    if facts is not None:
        event_id = facts.get("id")
        patients = facts.get("pt") or []
    else:
        patients = row.get("patient_list") or []
        try:
            event_id = json.loads(row.get("content") or "").get("id")
        except (ValueError, AttributeError, TypeError):
            pass
    patients = [p for p in patients if isinstance(p, str) and p.startswith("Patient/")
                and len(p) <= MAX_INDEXED_PATIENT and storable_text(p) == p][:100]
    where = f"journal {q.journal} position {q.position}" if q.journal else "no journal"
    event = build_audit_event(
        Principal.system(q.tenant, subject=AGENT), action="E", subtype=SUBTYPE,
        resources=[], patients=patients, outcome="8", recorded_us=recorded_us,
        description=f"an audit record could not be stored as written and is kept in "
                    f"quarantine (fkj audit quarantine list): sha256 {q.sha256}, {where}; "
                    f"the database said: {q.error}")
    detail = [{"type": "sha256", "valueString": q.sha256},
              {"type": "source", "valueString": where}]
    if isinstance(event_id, str) and event_id:
        detail.append({"type": "AuditEvent.id", "valueString": storable_text(event_id[:64])})
    event.setdefault("entity", []).append({
        "type": dict(_TYPE_OBJECT), "role": dict(_ROLE_SECURITY),
        "name": "quarantined audit record", "detail": detail})
    return event


def insert_params(q: Quarantined, seq: int, now_us: int) -> tuple:
    return (q.tenant, seq, now_us, q.journal, q.position, q.error,
            base64.b64encode(q.record).decode("ascii"), q.sha256)


def original_bytes(record: str) -> bytes:
    """The quarantined bytes of a row's ``record`` column."""
    return base64.b64decode(record.encode("ascii"), validate=True)


def named_sha256(event: dict) -> str | None:
    """The sha256 a stand-in record names (None if it names none)."""
    for e in event.get("entity") or ():
        if (e.get("role") or {}).get("code") == _ROLE_SECURITY["code"]:
            for d in e.get("detail") or ():
                if d.get("type") == "sha256":
                    return d.get("valueString")
    return None


def check(conn, tenant: str, stand_ins: dict[int, str | None], problem) -> int:
    """Compare ``tenant``'s quarantined records with the chain's stand-ins (seq → the
    sha256 each names): every stand-in has its record, every record its stand-in, and the
    bytes hash to what the chain says. Returns how many records are in quarantine."""
    rows = conn.execute(select(audit_quarantine.c.seq, audit_quarantine.c.record,
                               audit_quarantine.c.sha256)
                        .where(audit_quarantine.c.tenant == tenant)).all()
    for r in rows:
        seq = int(r.seq)
        named = stand_ins.pop(seq, False)
        if named is False:
            problem(f"quarantine: record at seq {seq} has no stand-in in the chain (added, or "
                    "the chain record changed?)")
            continue
        try:
            actual = hashlib.sha256(original_bytes(r.record)).hexdigest()
        except ValueError:
            actual = None
        if actual != r.sha256 or named != r.sha256:
            problem(f"quarantine: record at seq {seq} does not match the sha256 its stand-in "
                    "in the chain names (quarantined record changed)")
    for seq in sorted(stand_ins):
        problem(f"quarantine: seq {seq} stands in for a quarantined record that is missing "
                "(deleted?)")
    return len(rows)


def list_quarantine(engine: Engine, tenant: str) -> list[dict]:
    """``tenant``'s quarantined records, oldest first: seq, time, source, error, sha256
    and the record (as text, with what UTF-8 cannot show escaped)."""
    with scope(engine, tenant) as conn:
        rows = conn.execute(select(audit_quarantine).where(audit_quarantine.c.tenant == tenant)
                            .order_by(audit_quarantine.c.seq)).all()
    out = []
    for r in rows:
        try:
            text = original_bytes(r.record).decode("utf-8", "backslashreplace")
        except ValueError:
            text = "(not base64: changed?)"
        out.append({"tenant": r.tenant, "seq": int(r.seq), "quarantined": int(r.quarantined),
                    "time": iso_instant(int(r.quarantined)), "journal": r.journal,
                    "position": int(r.position), "error": r.error, "sha256": r.sha256,
                    "record": storable_text(text)})
    return out


def now_us() -> int:
    return _now_us()


__all__ = ["AGENT", "SUBTYPE", "Quarantined", "check", "describe", "insert_params",
           "list_quarantine", "named_sha256", "original_bytes", "stand_in", "transient"]
