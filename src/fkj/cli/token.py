"""``fkj token``: print an access token for scripts (demo/dev mode only)."""

from __future__ import annotations

import os
from typing import Optional

import typer
from rich.console import Console

from fkj.cli.db import DatabaseUrl, engine_for
from fkj.errors import FhirError

console = Console(stderr=True)


def token(tenant: str = typer.Option(..., "--tenant", help="kommunenummer"),
          scope: str = typer.Option("system/*.cruds", "--scope"),
          database_url: Optional[str] = DatabaseUrl,
          base_url: str = typer.Option("http://127.0.0.1:8080", "--base-url", envvar="FKJ_BASE_URL"),
          lifetime: int = typer.Option(3600, "--lifetime", help="seconds"),
          demo: bool = typer.Option(False, "--demo", envvar="FKJ_DEMO")) -> None:
    """Print a signed access token. Refused unless demo/dev mode (--demo or FKJ_DEMO=1)."""
    from fkj.security.dev import mint_dev_token

    try:
        tok = mint_dev_token(engine_for(database_url), tenant, scope, demo=demo,
                             base_url=base_url, lifetime=lifetime)
    except FhirError as e:
        console.print(f"[red]error:[/red] {e.diagnostics}")
        raise typer.Exit(2) from None
    print(tok)


def register(app: typer.Typer) -> None:
    app.command("token", help="Print an access token (demo/dev mode only).")(token)


__all__ = ["register", "os"]
