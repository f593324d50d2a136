"""Session settings of the engines (fkj.store.engine)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from fkj.store.engine import make_engine


def test_postgresql_connections_run_without_jit(db):
    """A plan above jit_above_cost was compiled by LLVM on every execution (28 % of an
    import's database CPU): every connection, of the app role and of the owner, has it off,
    also for a statement whose estimate is far above the threshold."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL setting")
    for app_role in (True, False):
        engine = make_engine(db.url, app_role=app_role)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SHOW jit")).scalar() == "off"
                plan = conn.execute(text(
                    "EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(a.x * b.x) FROM "
                    "generate_series(1, 2000) a(x) CROSS JOIN generate_series(1, 2000) b(x)"
                )).scalar()
                assert plan[0]["Plan"]["Total Cost"] > 100_000  # above jit_above_cost
                assert "JIT" not in plan[0]
        finally:
            engine.dispose()
