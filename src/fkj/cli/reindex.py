"""``fkj reindex``: rebuild a tenant's search index (e.g. after adding SearchParameters)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeRemainingColumn)

from fkj.cli.db import DatabaseUrl, engine_for
from fkj.config import Settings, default_database_url

console = Console()


def reindex(tenant: str = typer.Option(..., "--tenant"),
            types: Optional[list[str]] = typer.Option(None, "--type",
                                                      help="only these resource types"),
            database_url: Optional[str] = DatabaseUrl) -> None:
    """Re-extract search index rows with the tenant's current search parameters."""
    from fkj.repository.repository import Repository
    from fkj.search.reindex import reindex as run
    from fkj.security.audit.operator import audited_services, operator_principal, record

    engine = engine_for(database_url)
    services = audited_services(
        engine, Settings(database_url=database_url or default_database_url()))
    repo = Repository(services, operator_principal(tenant, "fkj-reindex"), tenant)
    with Progress(TextColumn("[bold]reindex"), BarColumn(), MofNCompleteColumn(),
                  TaskProgressColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task("reindex", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        n = run(repo, types or None, update)
    record(engine, tenant, "fkj-reindex", action="U", subtype="$reindex",
           description=f"fkj reindex: search index rebuilt for {n} resources"
                       + (f" of {', '.join(types)}" if types else ""))
    from fkj.cli.audit import anchor
    anchor(engine, tenant)
    console.print(f"reindexed {n} resources in tenant {tenant}")


def register(app: typer.Typer) -> None:
    app.command("reindex", help="Rebuild a tenant's search index.")(reindex)
