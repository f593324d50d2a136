"""Tenants: one per municipality, named by its kommunenummer."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Engine, insert, select, update

from fkj.store.backend import write_transaction
from fkj.errors import BadRequest, Conflict, NotFound
from fkj.store.backend import now_us
from fkj.store.schema import tenant as tenant_table


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str


def validate_kommunenummer(nr: str) -> None:
    if not (len(nr) == 4 and nr.isdigit()):
        raise BadRequest(f"kommunenummer must be four digits, got {nr!r}")
    try:
        from fkj.model.kommuner import check_kommunenummer
    except ImportError:  # pragma: no cover - the list ships with the package
        return
    reason = check_kommunenummer(nr)
    if reason:
        raise BadRequest(reason)


def create_tenant(engine: Engine, nr: str, name: str, *, official: bool = True,
                  audit=None) -> Tenant:
    """Create a tenant. ``official=False`` (tests and the sandbox only) accepts any four
    digits instead of requiring a kommunenummer from the official list. ``audit(conn,
    tenant)`` records the change in its transaction (fkj.security.audit.operator)."""
    if official:
        validate_kommunenummer(nr)
    elif not (len(nr) == 4 and nr.isdigit()):
        raise BadRequest(f"tenant id must be four digits, got {nr!r}")
    with write_transaction(engine) as conn:
        if conn.execute(select(tenant_table.c.id).where(tenant_table.c.id == nr)).first():
            raise Conflict(f"tenant {nr} exists already")
        conn.execute(insert(tenant_table).values(id=nr, name=name, created=now_us(),
                                                 event_seq=0, settings="{}"))
        if audit is not None:
            audit(conn, nr)
    return Tenant(nr, name)


def list_tenants(engine: Engine) -> list[Tenant]:
    with engine.connect() as conn:
        rows = conn.execute(select(tenant_table.c.id, tenant_table.c.name)
                            .order_by(tenant_table.c.id)).all()
    return [Tenant(r.id, r.name) for r in rows]


class TenantCache:
    """Known tenants, cached in the process (tenants are created rarely; a miss re-reads)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._known: dict[str, Tenant] = {}

    def get(self, nr: str) -> Tenant:
        t = self._known.get(nr)
        if t is None:
            with self.engine.connect() as conn:
                row = conn.execute(select(tenant_table.c.id, tenant_table.c.name)
                                   .where(tenant_table.c.id == nr)).first()
            if row is None:
                raise NotFound(f"unknown tenant (kommunenummer) {nr!r}")
            t = self._known[nr] = Tenant(row.id, row.name)
        return t


def tenant_settings(engine: Engine, nr: str) -> dict:
    """The tenant's configuration (JSON), e.g. ``demo_people`` for demo logins."""
    with engine.connect() as conn:
        raw = conn.execute(select(tenant_table.c.settings)
                           .where(tenant_table.c.id == nr)).scalar_one_or_none()
    if raw is None:
        raise NotFound(f"unknown tenant (kommunenummer) {nr!r}")
    return orjson.loads(raw or "{}")


def update_tenant_settings(engine: Engine, nr: str, *, audit=None, **values) -> dict:
    """Merge ``values`` into the tenant's settings. ``audit(conn, tenant, names)`` records
    the change in its transaction (fkj.security.audit.operator)."""
    with write_transaction(engine) as conn:
        raw = conn.execute(select(tenant_table.c.settings)
                           .where(tenant_table.c.id == nr)).scalar_one_or_none()
        if raw is None:
            raise NotFound(f"unknown tenant (kommunenummer) {nr!r}")
        current = orjson.loads(raw or "{}")
        current.update(values)
        conn.execute(update(tenant_table).where(tenant_table.c.id == nr)
                     .values(settings=orjson.dumps(current).decode()))
        if audit is not None:
            audit(conn, nr, sorted(values))
    return current
