"""Emergency access (akuttilgang, break-the-glass): a person opens one patient's record for a
limited time, giving a reason. The access purpose is then BTG; the municipality lists the
accesses for follow-up (``$akuttilganger``). Emergency access lifts only the care-relation
requirement: sperringer and the sensitivity rules still apply."""

from __future__ import annotations

from sqlalchemy import insert, select

from fkj.security.policy.cache import bump
from fkj.security.policy.roles import may_break_glass
from fkj.security.policy.tables import emergency_access as ea
from fkj.store.backend import now_us, scope

DEFAULT_HOURS = 4
HOUR_US = 3600 * 1_000_000


def agent_of(principal) -> str:
    return principal.hpr_number or principal.subject


def open_grant(repo, patient_id: str, reason: str, hours: float = DEFAULT_HOURS) -> dict:
    from fkj.errors import Forbidden
    p = repo.principal
    if not may_break_glass(p):  # $akuttilgang checks first; this holds for every caller
        raise Forbidden("akuttilgang kan bare brukes av helsepersonell")
    started = now_us()
    row = {"tenant": repo.tenant, "agent": agent_of(p), "fhir_user": p.fhir_user,
           "unit": p.unit, "roles": " ".join(sorted(p.roles)), "patient": patient_id,
           "reason": reason, "started": started, "expires": started + int(hours * HOUR_US)}
    with scope(repo.services.engine, repo.tenant, write=True) as conn:
        row["id"] = conn.execute(insert(ea).values(**row).returning(ea.c.id)).scalar_one()
        bump(conn, repo.tenant)  # cached decision contexts must see the grant
    repo._fkj_policy_ctx = None
    return row


def active_grants(repo) -> dict[str, dict]:
    """patient id → the caller's newest unexpired grant (none for a caller who may not
    use emergency access — e.g. a token of the same person without a clinical role)."""
    p = repo.principal
    if not may_break_glass(p):
        return {}
    now = now_us()
    with repo._reading() as conn:
        rows = conn.execute(select(ea).where(
            ea.c.tenant == repo.tenant, ea.c.agent == agent_of(p), ea.c.started <= now,
            ea.c.expires > now).order_by(ea.c.started)).mappings().all()
    return {r["patient"]: dict(r) for r in rows}


def emergency_grant(repo, patient_id: str) -> dict | None:
    """The caller's active emergency grant for the patient, or None."""
    if repo.principal.kind != "practitioner":
        return None
    return active_grants(repo).get(patient_id)


def list_grants(repo, since_us: int | None = None, until_us: int | None = None) -> list[dict]:
    conds = [ea.c.tenant == repo.tenant]
    if since_us is not None:
        conds.append(ea.c.started >= since_us)
    if until_us is not None:
        conds.append(ea.c.started < until_us)
    with repo._reading() as conn:
        return [dict(r) for r in conn.execute(
            select(ea).where(*conds).order_by(ea.c.started, ea.c.id)).mappings()]
