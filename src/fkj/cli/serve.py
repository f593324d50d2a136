"""``fkj serve``."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from fkj.cli.db import DatabaseUrl
from fkj.config import Settings, default_database_url
from fkj.store.migrate import SchemaMismatch, check_schema

console = Console(stderr=True)


def build_server_app(settings: Settings):
    from fkj.app import build_fkj, create_app
    from fkj.wiring import wire

    fkj = build_fkj(settings)
    check_schema(fkj.services.engine)
    wire(fkj)
    # statistics gathered while the server runs reach its pooled connections (SQLite); on
    # PostgreSQL a table that doubled since its last analysis is analysed
    from fkj.store.maintenance import StatisticsWatcher
    fkj.services.extras["statistics_watcher"] = StatisticsWatcher(fkj.services.engine).start()
    # stopped with the server: the audit log chains what it can and anchors it
    from fkj.cli.workers import StopAnswer, at_stop
    at_stop(fkj.close)
    return StopAnswer(create_app(fkj))


def serve(host: str = typer.Option("127.0.0.1", "--host"),
          port: int = typer.Option(8080, "--port"),
          database_url: Optional[str] = DatabaseUrl,
          demo: bool = typer.Option(False, "--demo", envvar="FKJ_DEMO",
                                    help="enable demo logins and dev tokens"),
          base_url: Optional[str] = typer.Option(None, "--base-url", envvar="FKJ_BASE_URL"),
          workers: int = typer.Option(0, "--workers", envvar="FKJ_WORKERS",
                                      help="server processes (0 = one per CPU core)")) -> None:
    import os

    import uvicorn

    settings = Settings(database_url=database_url or default_database_url(), demo=demo,
                        base_url=base_url or f"http://{host}:{port}")
    try:
        app = build_server_app(settings)
    except SchemaMismatch as e:
        console.print(f"[red]fkj serve cannot start:[/red] {e.diagnostics}")
        sys.exit(3)
    # SQLite has no autovacuum to gather planner statistics: gather them once at start
    from fkj.store.maintenance import refresh_statistics
    refresh_statistics(app.state.fkj.services.engine)
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        # stops within STOP_SECONDS of SIGTERM, even with a request or the audit shipper
        # stuck in the database (fkj.cli.workers.serve)
        from fkj.cli.workers import serve as serve_until_stopped
        serve_until_stopped(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           access_log=False))
        return
    # several processes: each builds its own app from the same settings (environment); the
    # supervisor's own app only checked the schema, so its background threads (event
    # delivery, statistics watcher, audit shipping) stop instead of idling beside the workers
    app.state.fkj.close()
    app.state.fkj.services.engine.dispose()
    os.environ.update({"FKJ_DATABASE_URL": settings.database_url,
                       "FKJ_BASE_URL": settings.base_url, "FKJ_DEMO": "1" if demo else ""})
    # each worker listens on a socket of its own (SO_REUSEPORT): see fkj.cli.workers
    from fkj.cli.workers import Workers
    try:
        code = Workers("fkj.cli.serve:app_from_environment", host, port, workers).run()
    except OSError as e:
        console.print(f"[red]fkj serve cannot start:[/red] {host}:{port}: {e.strerror or e}")
        sys.exit(1)
    if code:
        console.print("[red]fkj serve stopped:[/red] a server process failed to start "
                      "(see its error above)")
        sys.exit(code)


def app_from_environment():
    """ASGI app factory for worker processes (settings come from FKJ_* variables)."""
    return build_server_app(Settings())
