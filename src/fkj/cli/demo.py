"""``fkj demo``: the whole platform on one machine, with synthetic municipalities — and the
three national services it federates (Kjernejournal, PLL, Pasientens prøvesvar) simulated
as separate processes that stop with the demo."""

from __future__ import annotations

import time

import typer
from rich.console import Console

from fkj.cli.db import DatabaseUrl
from fkj.config import Settings

console = Console()
DEMO_PATIENTS = 30


def demo(database_url: str | None = DatabaseUrl,
         host: str = typer.Option("127.0.0.1", "--host"),
         port: int = typer.Option(8080, "--port"),
         patients: int = typer.Option(DEMO_PATIENTS, "--patients",
                                      help="synthetic patients per municipality"),
         serve_too: bool = typer.Option(True, "--serve/--no-serve")) -> None:
    """Migrate, create the eight FKJ municipalities, seed them, and serve on port 8080."""
    from fkj.model.kommuner import FKJ_MUNICIPALITIES
    from fkj.store.engine import make_engine
    from fkj.store.migrate import upgrade
    from fkj.store.tenants import create_tenant, list_tenants

    url = database_url or "sqlite:///fkj-data/demo.sqlite"
    t0 = time.perf_counter()
    upgrade(make_engine(url, app_role=False))
    engine = make_engine(url)
    existing = {t.id for t in list_tenants(engine)}
    from fkj.security.audit.operator import tenant_change
    for nr, name in FKJ_MUNICIPALITIES.items():
        if nr not in existing:
            create_tenant(engine, nr, name, audit=tenant_change(
                "fkj-demo", "C", "$tenant-create", f"fkj demo: tenant {nr} ({name}) created"))
    settings = Settings(database_url=url, demo=True, base_url=f"http://{host}:{port}")
    from fkj.cli.seed import seed_tenant

    with console.status("seeding synthetic municipalities …"):
        for nr in FKJ_MUNICIPALITIES:
            seed_tenant(engine, settings, nr, patients, 42)
    from fkj.security.audit.checkpoints import checkpoint_now
    checkpoint_now(engine, list(FKJ_MUNICIPALITIES))
    console.print(f"[green]demo data ready in {time.perf_counter() - t0:.1f} s[/green]")
    sims: list = []
    try:
        if serve_too:
            with console.status("starting the national-service simulators …"):
                sims = start_simulators(engine, host, port + 1, list(FKJ_MUNICIPALITIES),
                                        patients)
        _print_guide(settings, engine, FKJ_MUNICIPALITIES)
        _print_simulators(settings, sims)
        if serve_too:
            from fkj.cli.serve import serve
            serve(host=host, port=port, database_url=url, demo=True,
                  base_url=settings.base_url, workers=1)
    finally:
        stop_simulators(engine, sims, list(FKJ_MUNICIPALITIES))


#: the national services the demo simulates (one each, for every demo municipality)
SIMULATED = ("kjernejournal", "pll", "provesvar")
SIMULATED_NAMES = {"kjernejournal": "Kjernejournal", "pll": "Pasientens legemiddelliste",
                   "provesvar": "Pasientens prøvesvar"}


def _port_free(host: str, port: int) -> bool:
    import socket
    s = socket.socket()
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _free_port(host: str) -> int:
    import socket
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_simulators(engine, host: str, first_port: int, tenants, patients: int,
                     seed: int = 42, timeout_s: float = 30.0):
    """Start the Kjernejournal, PLL and Pasientens prøvesvar simulators as separate processes
    (``fkj simulate``), each holding the persons of every tenant in ``tenants`` (a
    kommunenummer or a list) exactly as ``fkj seed`` created them (same ``patients`` and
    ``seed``), and point those tenants' ``sources`` at them. Ports: ``first_port`` and the two
    after it (a busy one is replaced by a free port). Waits until every simulator answers
    ``/health``. Returns (kind, url, process) triples; stop them with
    :func:`stop_simulators`."""
    import subprocess
    import sys
    import tempfile

    import httpx

    from fkj.store.tenants import update_tenant_settings

    tenants = [tenants] if isinstance(tenants, str) else list(tenants)
    out: list = []
    try:
        for i, kind in enumerate(SIMULATED):
            p = first_port + i
            if not _port_free(host, p):
                p = _free_port(host)
            # its errors, shown if it fails to start; closed by stop_simulators
            log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
            proc = subprocess.Popen(
                [sys.executable, "-m", "fkj.cli.simulate", kind, "--port", str(p),
                 "--host", host, "--tenant", ",".join(tenants), "--patients", str(patients),
                 "--seed", str(seed), "--exit-with-parent"],
                stdout=subprocess.DEVNULL, stderr=log)
            proc.log = log  # type: ignore[attr-defined]
            out.append((kind, f"http://{host}:{p}", proc))
        deadline = time.monotonic() + timeout_s
        for kind, url, proc in out:
            while True:
                if proc.poll() is not None:
                    proc.log.seek(0)
                    err = proc.log.read().decode(errors="replace")[-1500:]
                    raise RuntimeError(f"the {kind} simulator ({url}) exited: {err}")
                try:
                    if httpx.get(url + "/health", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {kind} simulator ({url}) did not start within "
                                       f"{timeout_s:g} s")
                time.sleep(0.1)
    except BaseException:
        stop_simulators(None, out, ())
        raise
    sources = [{"name": kind, "base_url": url, "client_id": "fkj",
                "client_secret": "fkj-secret"} for kind, url, _ in out]
    for t in tenants:
        update_tenant_settings(engine, t, sources=sources, audit=_sources_changed)
    return out


def stop_simulators(engine, sims, tenants) -> None:
    """Stop the simulators and take them out of the tenants' configuration again."""
    for _, _, proc in sims:
        if proc.poll() is None:
            proc.terminate()
    for _, _, proc in sims:
        try:
            proc.wait(5)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
            proc.kill()
            proc.wait()
        log = getattr(proc, "log", None)
        if log is not None:
            log.close()
    if engine is not None and sims:
        import contextlib

        from fkj.store.tenants import update_tenant_settings
        for t in tenants:
            with contextlib.suppress(Exception):  # e.g. the database is gone already
                update_tenant_settings(engine, t, sources=None, audit=_sources_changed)


def _sources_changed(conn, tenant: str, names) -> None:
    from fkj.security.audit.operator import tenant_change
    tenant_change("fkj-demo", "U", "$tenant-settings",
                  "fkj demo: national-service simulators configured")(conn, tenant, names)


def _print_simulators(settings: Settings, sims) -> None:
    if not sims:
        return
    console.print("National services (simulated, separate processes; every municipality's "
                  "$oversikt asks them):")
    for kind, sim_url, _ in sims:
        console.print(f"  {SIMULATED_NAMES[kind]:<27} {sim_url}")
    console.print("The HLR-minus story patient's overview (Bergen; local + the three services):")
    console.print(f"  curl -H \"Authorization: Bearer $TOKEN\" "
                  f"'{settings.base_url}/fhir/4601/Patient/4601-pat-0/$oversikt'")


def _print_guide(settings: Settings, engine, municipalities: dict[str, str]) -> None:
    from fkj.security.dev import mint_dev_token

    base = settings.base_url
    token = mint_dev_token(engine, "4601", "system/*.cruds", demo=True, base_url=base,
                           lifetime=8 * 3600)
    console.rule("FKJ-plattformen demo")
    console.print(f"Server:   {base}/   (Norwegian start page)")
    for nr, name in municipalities.items():
        console.print(f"  {name:<13} FHIR base {base}/fhir/{nr}")
    console.print(f"Metadata: curl {base}/fhir/4601/metadata")
    console.print(f"SMART:    {base}/fhir/4601/.well-known/smart-configuration")
    console.print("A system token for Bergen (8 hours; make one with `fkj token --tenant 4601 --demo`):")
    console.print(f"  export TOKEN={token}", soft_wrap=True)
    console.print(f"  curl -H \"Authorization: Bearer $TOKEN\" '{base}/fhir/4601/Patient?_count=5'")
    console.print("Demo logins (pick one on the login page a SMART app sends you to):")
    from fkj.store.tenants import tenant_settings
    for person in tenant_settings(engine, "4601").get("demo_people", []):
        role = ", ".join(person.get("roles", [])) or "innbygger"
        console.print(f"  Bergen  {person['name']:<28} {role:<14} {person.get('note', '')}")


def register(app: typer.Typer) -> None:
    app.command("demo", help="Create demo municipalities and run the server.")(demo)
