"""``fkj seed``: load a deterministic synthetic population into a tenant."""

from __future__ import annotations

from itertools import islice
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fkj.cli.db import DatabaseUrl, engine_for
from fkj.config import Settings, default_database_url

console = Console()
BATCH = 500


TOOL = "fkj-seed"


def load(engine, settings: Settings, tenant: str, resources, *, progress=None, task=None) -> int:
    """Store resources with their client-assigned ids (idempotent: a re-run updates). Each
    write is audited in its transaction, the operator as agent (one AuditEvent per
    resource, as over REST)."""
    from fkj.repository.repository import Repository
    from fkj.security.audit.operator import audited_services, operator_principal

    services = audited_services(engine, settings)
    repo = Repository(services, operator_principal(tenant, TOOL), tenant)
    it = iter(resources)
    n = 0
    while batch := list(islice(it, BATCH)):
        n += repo.put_many(batch)
        if progress is not None:
            progress.update(task, advance=len(batch))
    return n


def seed_tenant(engine, settings: Settings, tenant: str, patients: int, seed_value: int = 42,
                *, progress=None) -> int:
    """Generate and load a synthetic municipality; remembers its demo login directory."""
    from fkj.security.audit.operator import tenant_change
    from fkj.seed.generator import demo_people, generate
    from fkj.store.tenants import update_tenant_settings

    resources = list(generate(tenant, patients, seed_value))
    task = progress.add_task("seed", total=len(resources), tenant=tenant) if progress else None
    n = load(engine, settings, tenant, resources, progress=progress, task=task)
    update_tenant_settings(engine, tenant, demo_people=demo_people(tenant, patients, seed_value),
                           seed={"patients": patients, "seed": seed_value},
                           audit=tenant_change(TOOL, "U", "$tenant-settings",
                                               f"fkj seed --patients {patients} --seed "
                                               f"{seed_value}: tenant settings changed"))
    from fkj.security.policy.cache import announce_change
    from fkj.store.maintenance import refresh_statistics
    announce_change(engine, tenant)
    refresh_statistics(engine)
    return n


def seed(tenant: str = typer.Option(..., "--tenant"),
         patients: int = typer.Option(100, "--patients"),
         seed_value: int = typer.Option(42, "--seed"),
         database_url: Optional[str] = DatabaseUrl) -> None:
    """Build a deterministic synthetic municipality (see src/fkj/data/seed/README.md)."""
    engine = engine_for(database_url)
    settings = Settings(database_url=database_url or default_database_url())
    with Progress(TextColumn("[bold]seed {task.fields[tenant]}"), BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), console=console) as progress:
        n = seed_tenant(engine, settings, tenant, patients, seed_value, progress=progress)
    console.print(f"seeded {n} resources for {patients} patients in tenant {tenant}")
    from fkj.cli.audit import anchor
    anchor(engine, tenant)


def register(app: typer.Typer) -> None:
    app.command("seed", help="Load a synthetic population into a tenant.")(seed)
