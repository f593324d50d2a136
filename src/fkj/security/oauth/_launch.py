"""EHR launch contexts: the EHR records which patient, encounter and user it opens an app
with, and hands the app an opaque ``launch`` id (SMART App Launch v2, EHR launch)."""

from __future__ import annotations

import secrets

from sqlalchemy import Engine, insert, select

from fkj.security.oauth._common import TENANT_RE
from fkj.security.oauth._types import LaunchContext
from fkj.security.tables import launch_context
from fkj.store.backend import now_us, write_transaction


def create_launch(engine: Engine, tenant: str, patient: str | None = None,
                  encounter: str | None = None, user: str | None = None,
                  lifetime: int = 300) -> str:
    """Create an EHR launch context; returns the opaque ``launch`` id for the app URL.
    ``patient`` and ``encounter`` may be references (``Patient/p1``) or ids."""
    if not TENANT_RE.match(tenant):
        raise ValueError("bad tenant")
    launch_id = secrets.token_urlsafe(24)
    now = now_us()

    def bare(ref: str | None, rtype: str) -> str | None:
        return ref.split("/", 1)[1] if ref and ref.startswith(rtype + "/") else ref

    with write_transaction(engine) as conn:
        conn.execute(insert(launch_context).values(
            launch_id=launch_id, tenant=tenant, patient=bare(patient, "Patient"),
            encounter=bare(encounter, "Encounter"), user_ref=user, created=now,
            expires=now + lifetime * 1_000_000))
    return launch_id


def find_launch(engine: Engine, launch_id: str, tenant: str) -> LaunchContext | None:
    """The launch context ``launch_id`` of ``tenant``; None if unknown, of another tenant or
    expired."""
    with engine.connect() as conn:
        row = conn.execute(select(launch_context).where(
            launch_context.c.launch_id == launch_id)).first()
    if row is None or row.tenant != tenant or row.expires <= now_us():
        return None
    return {"patient": row.patient, "encounter": row.encounter, "user": row.user_ref}
