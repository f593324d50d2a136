"""Rebuild search index rows from stored resources (after a tenant adds SearchParameters)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from sqlalchemy import func, select

from fkj.repository.unit_of_work import INDEX_COLUMNS, Prepared, _index_rows
from fkj.search.extract import extract
from fkj.store import bulk
from fkj.store import resources as sql
from fkj.store.backend import scope
from fkj.store.schema import INDEX_TABLES, resource

BATCH = 500


def reindex(repo, types: list[str] | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> int:
    """Re-extract the index rows of every current resource (of ``types``) in the tenant with
    the tenant's current search parameters. Each batch is one transaction; returns the count."""
    registry = repo.registry
    engine, tenant = repo.services.engine, repo.tenant
    conds = [resource.c.tenant == tenant, resource.c.deleted.is_(False)]
    if types:
        conds.append(resource.c.type.in_(types))
    with scope(engine, tenant) as conn:
        total = conn.execute(select(func.count()).select_from(resource).where(*conds)).scalar_one()
    done, last = 0, 0
    while True:
        with scope(engine, tenant, write=True) as conn:
            rows = conn.execute(select(resource.c.rid, resource.c.type, resource.c.id,
                                       resource.c.content)
                                .where(*conds, resource.c.rid > last)
                                .order_by(resource.c.rid).limit(BATCH)).all()
            if not rows:
                break
            out: dict[str, list[tuple]] = {}
            for r in rows:
                op = Prepared(r.type, r.id, 0, 0, "PUT", "", rid=r.rid,
                              index=extract(orjson.loads(r.content), registry))
                _index_rows(tenant, op, out)
            sql.replace_index(conn, tenant, [r.rid for r in rows], {})
            for name, index_rows in out.items():
                bulk.insert_rows(conn, INDEX_TABLES[name], INDEX_COLUMNS[name], index_rows)
        last = rows[-1].rid
        done += len(rows)
        if on_progress:
            on_progress(done, total)
    return done
