"""``fkj import`` and ``fkj export``: bulk data in and out of one tenant (see docs/migration.md).

Exit status of ``fkj import``: 0 every line loaded, 1 some lines rejected (see the error
report), 2 fatal (nothing more could be done: unknown tenant, missing path, database down).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from fkj.cli.db import DatabaseUrl, engine_for
from fkj.config import Settings, default_database_url

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "–/s", style="progress.data.speed")


def _progress(label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                    RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, transient=False)


def import_command(
        paths: list[Path] = typer.Argument(..., help="NDJSON/Bundle files or directories"),
        tenant: str = typer.Option(..., "--tenant", help="kommunenummer of the tenant"),
        dry_run: bool = typer.Option(False, "--dry-run",
                                     help="validate and check references; store nothing"),
        batch_size: int = typer.Option(1000, "--batch-size", min=1,
                                       help="resources per transaction"),
        report: Optional[Path] = typer.Option(
            None, "--report", help="directory of the error report "
            "(default ./fkj-data/imports/<tenant>-<name of first PATH>/)"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        workers: Optional[int] = typer.Option(
            None, "--workers", min=0, help="validation processes (default: one per core, "
            "max 4; 0 = none)"),
        database_url: Optional[str] = DatabaseUrl) -> None:
    """Import FHIR NDJSON and Bundle files; resumable, idempotent (see docs/migration.md)."""
    from fkj.bulk.importer import Importer, default_report_dir

    try:
        engine = engine_for(database_url)
    except Exception as e:  # noqa: BLE001
        console.print(f"[red]FATAL[/red]: cannot open the database: {e}")
        raise typer.Exit(2)
    settings = Settings(database_url=database_url or default_database_url())
    report_dir = report or default_report_dir(tenant, [str(p) for p in paths])
    bar = _progress(f"import {tenant}") if progress else None
    task = bar.add_task("import", total=None) if bar else None

    def on_total(n: int) -> None:
        if bar is not None:
            bar.update(task, total=n)

    def on_progress(n: int) -> None:
        if bar is not None:
            bar.update(task, advance=n)

    importer = Importer(engine, settings, tenant, batch_size=batch_size, dry_run=dry_run,
                        report_dir=report_dir, on_progress=on_progress, on_total=on_total,
                        workers=workers)
    if bar is not None:
        with bar:
            result = importer.run([str(p) for p in paths])
    else:
        result = importer.run([str(p) for p in paths])
    if not dry_run:
        from fkj.cli.audit import anchor
        anchor(engine, tenant)  # its batches' audit records, checkpointed
    engine.dispose()
    style = {0: "green", 1: "yellow", 2: "red"}[result.exit_code]
    console.print(result.summary(), style=style, soft_wrap=True, highlight=False)
    raise typer.Exit(result.exit_code)


def export_command(
        tenant: str = typer.Option(..., "--tenant", help="kommunenummer of the tenant"),
        out: Path = typer.Option(..., "--out", help="directory for the NDJSON files"),
        types: Optional[list[str]] = typer.Option(
            None, "--type", help="resource type(s), repeat or comma-separate (default: all)"),
        since: Optional[str] = typer.Option(None, "--since",
                                            help="only resources changed at/after this instant"),
        type_filter: Optional[list[str]] = typer.Option(
            None, "--type-filter", help="Type?search-query (as _typeFilter), repeatable"),
        group: Optional[str] = typer.Option(None, "--group", help="export a Group's members"),
        patients: bool = typer.Option(False, "--patients",
                                      help="only patients' compartments (Patient level)"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        database_url: Optional[str] = DatabaseUrl) -> None:
    """Export a tenant's resources as FHIR NDJSON, one file per type (system principal)."""
    import orjson

    from fkj.bulk.exporter import ExportRequest, parse_since, run_export
    from fkj.errors import FhirError
    from fkj.repository.repository import Repository
    from fkj.repository.services import Services
    from fkj.search.registry import default_registry
    from fkj.store.backend import now_us

    engine = engine_for(database_url)
    settings = Settings(database_url=database_url or default_database_url())
    services = Services(engine=engine, settings=settings)
    services.extras["registry"] = default_registry()
    from fkj.security.audit.writer import AuditWriter
    services.extras["audit_writer"] = AuditWriter(engine)  # the export is audited
    from fkj.security.audit.operator import operator_principal
    repo = Repository(services, operator_principal(tenant, "fkj-export"), tenant)
    try:
        services.tenants.get(tenant)
        req = ExportRequest(
            level="group" if group else "patient" if patients else "system", group_id=group,
            types=[t.strip() for v in (types or []) for t in v.split(",") if t.strip()] or None,
            since=parse_since(since) if since else None, type_filters=list(type_filter or []),
            transaction_time=now_us())
        req.check(repo)
    except FhirError as e:
        console.print(f"[red]FATAL[/red]: {e.diagnostics}")
        raise typer.Exit(2)
    from fkj.bulk.exporter import private_dir
    private_dir(out)  # the files are 0600 in any case; a directory made here is 0700
    bar = _progress(f"export {tenant}") if progress else None
    task = bar.add_task("export", total=None) if bar else None

    def on_progress(n: int, label: str) -> None:
        if bar is not None:
            bar.update(task, advance=n)

    if bar is not None:
        with bar:
            result = run_export(repo, req, out, on_progress=on_progress)
    else:
        result = run_export(repo, req, out, on_progress=on_progress)
    manifest = result.manifest(lambda name: str((out / name).resolve()), request=f"fkj export "
                               f"--tenant {tenant}")
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    for o in manifest["output"]:
        console.print(f"{o['type']:<28} {o['count']:>10}  {o['url']}")
    console.print(f"[green]exported {result.total} resources[/green] "
                  f"({result.errors} error(s)) to {out}")
    engine.dispose()
    raise typer.Exit(1 if result.errors else 0)


def register(app: typer.Typer) -> None:
    app.command("import", help="Import FHIR NDJSON/Bundle files into a tenant.")(import_command)
    app.command("export", help="Export a tenant as FHIR NDJSON files.")(export_command)
