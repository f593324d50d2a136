"""Each tenant's search parameters: the R4 definitions plus the tenant's own active
SearchParameter resources (e.g. for HL7 Norway extensions such as the kommunenummer on an
address). A tenant's registry is cached per process and rebuilt after a SearchParameter of
that tenant is written (``after_commit`` hook) — or, in other processes, after at most
``TTL`` seconds."""

from __future__ import annotations

import threading
import time

import orjson
from sqlalchemy import select

from fkj.errors import InvalidResource
from fkj.search.registry import Registry, default_registry, valid_code
from fkj.store.backend import scope
from fkj.store.schema import resource

TTL = 5.0
_lock = threading.Lock()


def tenant_registry(services, tenant: str) -> Registry:
    if services.engine is None:
        # a worker process without a database (bulk import preparation): the registry the
        # parent handed over, else the R4 definitions
        return services.extras.get("registry") or default_registry()
    cache: dict = services.extras.setdefault("tenant_registries", {})
    hit = cache.get(tenant)
    now = time.monotonic()
    if hit is not None and now - hit[1] < TTL:
        return hit[0]
    with _lock:
        base = services.extras.get("registry") or default_registry()
        custom = load_custom(services.engine, tenant)
        key = orjson.dumps(custom, option=orjson.OPT_SORT_KEYS)
        if hit is not None and hit[2] == key:
            reg = hit[0]  # unchanged: keep the compiled extractors
        else:
            reg = base.with_custom(custom) if custom else base
        cache[tenant] = (reg, now, key)
    return reg


def load_custom(engine, tenant: str) -> list[dict]:
    with scope(engine, tenant) as conn:
        rows = conn.execute(select(resource.c.content).where(
            resource.c.tenant == tenant, resource.c.type == "SearchParameter",
            resource.c.deleted.is_(False))).all()
    params = [orjson.loads(r.content) for r in rows]
    return [p for p in params if p.get("status") in ("active", "draft") and p.get("expression")]


def invalidate_on_commit(repo, operations) -> None:
    """``after_commit`` hook: a written SearchParameter changes the tenant's registry."""
    if any(op.type == "SearchParameter" for op in operations):
        repo.services.extras.setdefault("tenant_registries", {}).pop(repo.tenant, None)


def check_search_parameters(repo, conn, operations) -> None:
    """``before_commit`` hook: a SearchParameter whose code could not name index rows (too
    long for their ``param`` column, or not a plain name) is refused with a 400 — stored, it
    made every later write of its base type fail."""
    for op in operations:
        if op.type == "SearchParameter" and not op.deleted:
            code = orjson.loads(op.content).get("code")
            if not valid_code(code):
                raise InvalidResource(
                    "SearchParameter.code must be a name of letters, digits, '-' and '_' "
                    "(at most 64 characters, not starting with a digit or '-')",
                    expression="SearchParameter.code", code="value")
