"""Helpers for the audit-log tests."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import text

from fkj.security.audit import append_in_transaction, build_audit_event
from fkj.store.backend import scope
from fkj.types import Principal

APPEND_ONLY_TABLES = ("audit_log", "audit_patient", "audit_quarantine")


def practitioner(tenant: str, hpr: str = "9144897", **kw) -> Principal:
    return Principal(kind="practitioner", subject=f"helseid-{hpr}", tenant=tenant,
                     hpr_number=hpr, roles=frozenset({"sykepleier"}), unit="HER:81234",
                     client_id="ehr-app", fhir_user=f"Practitioner/{hpr}", **kw)


def read_event(tenant: str, patient: str = "Patient/p1", hpr: str = "9144897", **kw) -> dict:
    return build_audit_event(practitioner(tenant, hpr), action="R", subtype="read",
                             resources=[f"Observation/{patient.split('/')[1]}-obs"],
                             patients=[patient], outcome="0", description=None, purpose=None,
                             **kw)


def fill(db, tenant: str, n: int, **kw) -> None:
    """Append ``n`` events in separate transactions (a few records per transaction)."""
    done = 0
    while done < n:
        batch = [read_event(tenant, **kw) for _ in range(min(3, n - done))]
        with scope(db.engine, tenant, write=True) as conn:
            append_in_transaction(conn, tenant, batch)
        done += len(batch)


@contextmanager
def tampering(db, tenant: str):
    """An owner connection in ``tenant``'s scope with the append-only triggers out of the way;
    they are back in place when the transaction commits, so no other session ever sees the
    tables unprotected."""
    with scope(db.owner_engine, tenant, write=True) as conn:
        if db.backend == "postgresql":
            for t in APPEND_ONLY_TABLES:
                conn.execute(text(f'ALTER TABLE "{t}" DISABLE TRIGGER USER'))
            yield conn
            for t in APPEND_ONLY_TABLES:
                conn.execute(text(f'ALTER TABLE "{t}" ENABLE TRIGGER USER'))
        else:
            saved = conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name IN ('audit_log', 'audit_patient', 'audit_quarantine')")).all()
            assert saved, "the migration installs append-only triggers on SQLite too"
            for name, _ in saved:
                conn.execute(text(f'DROP TRIGGER "{name}"'))
            yield conn
            for _, sql in saved:
                conn.execute(text(sql))
