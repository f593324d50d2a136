"""``fkj simulate kjernejournal|pll|provesvar``: run a national service's simulator as its own
HTTP server (Starlette + uvicorn), with synthetic data consistent with ``fkj seed``."""

from __future__ import annotations

import signal
import sys
import time

import typer


def simulate(service: str = typer.Argument(..., help="kjernejournal | pll | provesvar"),
             port: int = typer.Option(..., "--port", help="TCP port to listen on"),
             host: str = typer.Option("127.0.0.1", "--host"),
             tenant: str = typer.Option("4601", "--tenant",
                                        help="the tenant(s) whose persons are simulated "
                                             "(comma-separated kommunenumre)"),
             patients: int = typer.Option(100, "--patients",
                                          help="population size, as given to fkj seed"),
             seed_value: int = typer.Option(42, "--seed", help="seed, as given to fkj seed"),
             fault: str | None = typer.Option(None, "--fault",
                                              help="slow | errors | hangs | down"),
             delay_ms: int = typer.Option(0, "--delay-ms", help="base latency of every answer"),
             slow_ms: int = typer.Option(3000, "--slow-ms", help="latency in fault mode slow"),
             client_id: str = typer.Option("fkj", "--client-id"),
             client_secret: str = typer.Option("fkj-secret", "--client-secret"),
             extra: str | None = typer.Option(
                 None, "--extra", help="JSON file (a Bundle or a list of resources, with the "
                                       "seed's ids) of facts only this service knows"),
             exit_with_parent: bool = typer.Option(
                 False, "--exit-with-parent",
                 help="stop when the process that started this one ends (fkj demo)")) -> None:
    """Run a simulator of a national service (Kjernejournal, PLL, prøvesvar)."""
    from fkj.sources.simulator import FAULTS, KINDS, Dataset, create_simulator

    if service not in KINDS:
        raise typer.BadParameter(f"service must be one of {', '.join(KINDS)}")
    if fault is not None and fault not in FAULTS:
        raise typer.BadParameter(f"--fault must be one of {', '.join(FAULTS)}")
    if exit_with_parent:
        _watch_parent()
    if fault == "down":
        # the service is down: nothing listens on the port (connections are refused)
        print(f"{service} simulator: fault 'down', not listening on {host}:{port}", flush=True)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        while True:
            time.sleep(3600)
    import uvicorn

    dataset = Dataset.synthetic(service, tenant, patients, seed_value, extra=_load_extra(extra))
    app = create_simulator(service, dataset, fault=fault, delay_ms=delay_ms, slow_ms=slow_ms,
                           client_id=client_id, client_secret=client_secret,
                           base_url=f"http://{host}:{port}")
    print(f"{service} simulator: tenant {tenant}, {patients} patients, seed {seed_value}, "
          f"fault {fault or 'none'}, on http://{host}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _watch_parent(interval_s: float = 1.0) -> None:
    """End this process (SIGTERM to itself: uvicorn shuts down cleanly) once its parent is
    gone — also when the parent was killed and could not stop it."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                os._exit(0)

    threading.Thread(target=watch, name="fkj-simulate-parent", daemon=True).start()


def _load_extra(path: str | None) -> list[dict]:
    if not path:
        return []
    import orjson
    with open(path, "rb") as f:
        data = orjson.loads(f.read())
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        return [e["resource"] for e in data.get("entry", []) or [] if e.get("resource")]
    if isinstance(data, dict):
        return [data]
    return list(data)


def register(app: typer.Typer) -> None:
    app.command("simulate", help="Run a simulator of a national service "
                                 "(kjernejournal, pll, provesvar).")(simulate)


def main() -> None:  # ``python -m fkj.cli.simulate SERVICE --port P`` (tests use this)
    app = typer.Typer(add_completion=False)
    app.command()(simulate)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
