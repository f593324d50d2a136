"""``fkj tenant create|list``."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fkj.cli.db import DatabaseUrl, engine_for
from fkj.errors import FhirError
from fkj.store.tenants import create_tenant, list_tenants

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command("create")
def create(kommunenummer: str, name: str = typer.Option(..., "--name", help="municipality name"),
           database_url: Optional[str] = DatabaseUrl) -> None:
    """Create a tenant for a municipality (four-digit kommunenummer)."""
    from fkj.cli.audit import anchor
    from fkj.security.audit.operator import tenant_change
    engine = engine_for(database_url)
    try:
        t = create_tenant(engine, kommunenummer, name, audit=tenant_change(
            "fkj-tenant", "C", "$tenant-create", f"fkj tenant create {kommunenummer}: "
            f"tenant {kommunenummer} ({name}) created"))
    except FhirError as e:
        console.print(f"[red]error:[/red] {e.diagnostics}")
        raise typer.Exit(2) from None
    console.print(f"created tenant {t.id} {t.name}: FHIR base /fhir/{t.id}")
    anchor(engine, t.id)


@app.command("list")
def list_(database_url: Optional[str] = DatabaseUrl) -> None:
    """List tenants."""
    table = Table("kommunenummer", "name", "FHIR base")
    for t in list_tenants(engine_for(database_url)):
        table.add_row(t.id, t.name, f"/fhir/{t.id}")
    console.print(table)
