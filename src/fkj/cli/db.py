"""``fkj migrate``."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

from fkj.config import default_database_url
from fkj.store.engine import make_engine
from fkj.store.migrate import head_revision, upgrade

console = Console()

DatabaseUrl = typer.Option(None, "--database-url", envvar="FKJ_DATABASE_URL",
                           help="SQLAlchemy URL; default: SQLite under ./fkj-data/")


def engine_for(database_url: Optional[str], *, app_role: bool = True):
    return make_engine(database_url or default_database_url(), app_role=app_role)


def migrate(database_url: Optional[str] = DatabaseUrl) -> None:
    engine = engine_for(database_url, app_role=False)
    rev = upgrade(engine)
    console.print(f"[green]schema at revision {rev}[/green] (latest {head_revision()})")
