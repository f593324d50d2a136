"""Schema migrations (Alembic) and the check that ``serve`` runs before it starts."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from fkj.errors import FhirError

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaMismatch(FhirError):
    status, code = 503, "transient"


def _config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Apply migrations up to ``revision``; returns the revision now in the database."""
    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)
    return current_revision(engine) or ""


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaMismatch` with a clear message unless the schema is at head."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaMismatch(
            "the database has no FKJ schema yet: run `fkj migrate` first "
            f"(needed revision {head})")
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current not in known:
        raise SchemaMismatch(
            f"the database schema ({current}) is newer than this version of fkj knows "
            f"(latest {head}): upgrade fkj instead of running an old version against it")
    raise SchemaMismatch(
        f"the database schema is at revision {current} but this version of fkj needs {head}: "
        "run `fkj migrate`")
