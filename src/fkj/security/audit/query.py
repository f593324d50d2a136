"""Searching the audit log: by patient, by agent (person or client) and by period."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select

from fkj.security.audit.events import iso_instant
from fkj.security.audit.tables import audit_log, audit_patient
from fkj.store.backend import scope


def _patient_ref(patient: str) -> str:
    return patient if "/" in patient else f"Patient/{patient}"


def search_audit(engine: Engine, tenant: str, patient: str | None = None,
                 agent: str | None = None, since_us: int | None = None,
                 until_us: int | None = None, limit: int = 100, *,
                 purpose: str | None = None, outcome: str | None = None) -> list[dict]:
    """Audit records of ``tenant``, newest first (by the time of the access; a read record
    is chained moments after the access, so chain order is not time order).

    ``patient`` is ``Patient/x`` (or just ``x``); ``agent`` the HPR-nummer, fødselsnummer or
    client id of the requestor; ``since_us``/``until_us`` bound ``recorded`` (inclusive,
    microseconds); ``purpose`` a purpose-of-use code (e.g. ``BTG`` to list emergency accesses
    for follow-up); ``outcome`` e.g. ``"4"`` for denials. Each result has ``seq``,
    ``recorded`` (µs), ``time`` (ISO), ``agent``, ``patients`` (list), ``action``,
    ``subtype``, ``purpose``, ``outcome`` and ``event`` (the AuditEvent).
    """
    c = audit_log.c
    q = select(c.seq, c.recorded, c.agent, c.patients, c.action, c.subtype, c.purpose,
               c.outcome, c.content).where(c.tenant == tenant)
    if patient:
        q = q.where(c.seq.in_(
            select(audit_patient.c.seq).where(audit_patient.c.tenant == tenant,
                                              audit_patient.c.patient == _patient_ref(patient))))
    if agent:
        q = q.where(c.agent == agent)
    if since_us is not None:
        q = q.where(c.recorded >= since_us)
    if until_us is not None:
        q = q.where(c.recorded <= until_us)
    if purpose:
        q = q.where((" " + c.purpose + " ").like(f"% {purpose} %"))
    if outcome:
        q = q.where(c.outcome == outcome)
    q = q.order_by(c.recorded.desc(), c.seq.desc()).limit(limit)
    with scope(engine, tenant) as conn:
        rows = conn.execute(q).all()
    return [{
        "seq": int(r.seq), "recorded": int(r.recorded), "time": iso_instant(int(r.recorded)),
        "agent": r.agent, "patients": r.patients.split() if r.patients else [],
        "action": r.action, "subtype": r.subtype,
        "purpose": r.purpose, "outcome": r.outcome, "event": json.loads(r.content),
    } for r in rows]
