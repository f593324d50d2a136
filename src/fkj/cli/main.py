"""The ``fkj`` command line: one module per command group, assembled here."""

from __future__ import annotations

import typer

from fkj.cli import (audit, bench, bulk, db, demo, reindex, seed, serve, simulate, tenant,
                     token)

app = typer.Typer(help="FKJ-plattformen: FHIR R4 platform for Norwegian municipalities",
                  no_args_is_help=True, add_completion=False)
app.command("migrate", help="Apply database schema migrations (Alembic).")(db.migrate)
app.command("serve", help="Run the HTTP server.")(serve.serve)
app.add_typer(tenant.app, name="tenant", help="Create and list tenants (municipalities).")
for _module in (demo, bench, token, seed, bulk, audit, reindex, simulate):
    _module.register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
