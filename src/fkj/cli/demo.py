"""``fkj demo``: the whole platform on one machine, with synthetic municipalities."""

from __future__ import annotations

import time
from typing import Optional

import typer
from rich.console import Console

from fkj.cli.db import DatabaseUrl
from fkj.config import Settings

console = Console()
DEMO_PATIENTS = 30


def demo(database_url: Optional[str] = DatabaseUrl,
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
    for nr, name in FKJ_MUNICIPALITIES.items():
        if nr not in existing:
            create_tenant(engine, nr, name)
    settings = Settings(database_url=url, demo=True, base_url=f"http://{host}:{port}")
    from fkj.cli.seed import seed_tenant

    with console.status("seeding synthetic municipalities …"):
        for nr in FKJ_MUNICIPALITIES:
            seed_tenant(engine, settings, nr, patients, 42)
    console.print(f"[green]demo data ready in {time.perf_counter() - t0:.1f} s[/green]")
    sims = start_simulators(engine, host, port + 1, DEMO_SOURCES_TENANT, patients) \
        if serve_too else []
    _print_guide(settings, engine, FKJ_MUNICIPALITIES)
    for kind, sim_url, _ in sims:
        console.print(f"Simulator {kind:<13} {sim_url}  (Bergen's $oversikt asks it)")
    if sims:
        console.print(f"Overview:  curl -H \"Authorization: Bearer $TOKEN\" "
                      f"'{settings.base_url}/fhir/{DEMO_SOURCES_TENANT}/Patient/"
                      f"{DEMO_SOURCES_TENANT}-pat-0/$oversikt'")
    try:
        if serve_too:
            from fkj.cli.serve import serve
            serve(host=host, port=port, database_url=url, demo=True,
                  base_url=settings.base_url, workers=1)
    finally:
        for _, _, proc in sims:
            proc.terminate()


#: the municipality whose $oversikt asks the three simulated national services
DEMO_SOURCES_TENANT = "4601"
SIMULATED = ("kjernejournal", "pll", "provesvar")


def start_simulators(engine, host: str, first_port: int, tenant: str, patients: int):
    """Start Kjernejournal, PLL and Pasientens prøvesvar simulators as separate processes
    (``fkj simulate``, the same persons as ``fkj seed``) and point the tenant's sources at
    them. Returns (kind, url, process) triples; the caller stops them."""
    import subprocess
    import sys

    import httpx

    from fkj.store.tenants import update_tenant_settings

    out, sources = [], []
    for i, kind in enumerate(SIMULATED):
        p = first_port + i
        proc = subprocess.Popen(
            [sys.executable, "-m", "fkj", "simulate", kind, "--port", str(p), "--host", host,
             "--tenant", tenant, "--patients", str(patients), "--seed", "42"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://{host}:{p}"
        out.append((kind, url, proc))
        sources.append({"name": kind, "base_url": url, "client_id": "fkj",
                        "client_secret": "fkj-secret"})
    deadline = time.monotonic() + 20
    for kind, url, proc in out:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                httpx.get(url + "/metadata", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
    update_tenant_settings(engine, tenant, sources=sources)
    return out


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
