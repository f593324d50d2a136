"""``fkj demo`` starts the three national-service simulators as processes of their own, points
every demo municipality's sources at them (so the demo's $oversikt shows federated items),
prints their URLs, and stops them — and takes them out of the configuration — with the demo."""

from __future__ import annotations

import httpx
from starlette.testclient import TestClient

from fkj.sources.base import item_sources
from tests.ports import free_port
from tests.views.conftest import PATIENTS, headers, overview, seed


def _federated_sources(bundle: dict) -> set[str]:
    return {u for e in bundle["entry"] for u, _ in item_sources(e["resource"])}


def test_simulators_feed_every_configured_tenant(asgi_app, views_app, db, seeded):
    from fkj.cli.demo import start_simulators, stop_simulators
    from fkj.views.wiring import views_registry

    t = seed(db, views_app)
    tenants = [t, seeded]
    sims = start_simulators(db.engine, "127.0.0.1", free_port(), tenants, PATIENTS)
    try:
        assert [k for k, _, _ in sims] == ["kjernejournal", "pll", "provesvar"]
        urls = {url for _, url, _ in sims}
        assert len({p.pid for _, _, p in sims}) == 3
        for kind, url, proc in sims:  # separate, running processes, each its own service
            assert proc.poll() is None
            assert httpx.get(f"{url}/health", timeout=2).json()["service"] == kind
        c = TestClient(asgi_app, base_url="http://testserver")
        for tenant in tenants:  # every tenant points at them, with the same persons
            configs, _ = views_registry(views_app.services).config_for(tenant)
            assert {s["base_url"] for s in configs} == urls
            b = overview(c, tenant, f"{tenant}-pat-0", headers(views_app, tenant)).json()
            assert _federated_sources(b) & urls == urls
            assert not [e for e in b["entry"]
                        if e["resource"]["resourceType"] == "OperationOutcome"]
    finally:
        stop_simulators(db.engine, sims, tenants)
    assert all(proc.poll() is not None for _, _, proc in sims)
    for tenant in tenants:
        assert views_registry(views_app.services).config_for(tenant)[0] == []


def test_fkj_demo_runs_the_simulators_while_it_serves(tmp_path, monkeypatch):
    """The CLI itself (`fkj demo`, what `make demo` runs) with a stand-in for the server: while
    it "serves", the simulators answer and Bergen's $oversikt shows their items; the demo
    prints their URLs; when the server stops, the simulators stop."""
    from typer.testing import CliRunner

    import fkj.cli.serve
    from fkj.cli.main import app

    url = f"sqlite:///{tmp_path}/demo.sqlite"
    port = free_port()
    seen: dict = {}

    def fake_serve(host, port, database_url, demo, base_url, workers):
        from fkj.app import build_fkj
        from fkj.config import Settings
        from fkj.fhir.request import FhirRequest
        from fkj.store.engine import make_engine
        from fkj.store.tenants import tenant_settings
        from fkj.types import Principal
        from fkj.wiring import wire

        engine = make_engine(database_url)
        fkj = build_fkj(Settings(database_url=database_url, demo=True, base_url=base_url),
                        engine=engine)
        wire(fkj)
        try:
            from fkj.model.kommuner import FKJ_MUNICIPALITIES
            seen["sources"] = {nr: [s["base_url"] for s in
                                    tenant_settings(engine, nr).get("sources") or []]
                               for nr in FKJ_MUNICIPALITIES}
            seen["health"] = {u: httpx.get(f"{u}/health", timeout=2).json()["service"]
                              for u in seen["sources"]["4601"]}
            req = FhirRequest("GET", "4601", ["Patient", "4601-pat-0", "$oversikt"], [], {})
            import orjson
            resp = fkj.handle(req, Principal.system("4601"))
            seen["overview"] = orjson.loads(resp.body)
        finally:
            fkj.close()  # background threads on this database
            engine.dispose()

    monkeypatch.setattr(fkj.cli.serve, "serve", fake_serve)
    result = CliRunner().invoke(app, ["demo", "--database-url", url, "--port", str(port),
                                      "--patients", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    urls = seen["sources"]["4601"]
    assert len(urls) == 3 and all(u.startswith("http://127.0.0.1:") for u in urls)
    assert all(v == urls for v in seen["sources"].values())  # every municipality
    assert sorted(seen["health"].values()) == ["kjernejournal", "pll", "provesvar"]
    assert set(urls) <= _federated_sources(seen["overview"])
    for u in urls:  # printed, and stopped with the demo
        assert u in result.output
        try:
            httpx.get(f"{u}/health", timeout=0.5)
            raise AssertionError(f"{u} still answers after the demo stopped")
        except httpx.HTTPError:
            pass
    from fkj.store.engine import make_engine
    from fkj.store.tenants import tenant_settings
    engine = make_engine(url)
    assert tenant_settings(engine, "4601").get("sources") is None
    engine.dispose()


def test_a_simulator_stops_when_the_demo_is_killed():
    """`--exit-with-parent` (used by `fkj demo`): even when the demo process is killed and
    cannot stop its simulators, they end."""
    import os
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-m', 'fkj.cli.simulate', 'pll', '--port', '{port}',"
        " '--patients', '1', '--exit-with-parent'])\n"
        "time.sleep(120)\n")])
    url = f"http://127.0.0.1:{port}/health"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(url, timeout=0.5).json()["service"] == "pll"
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(url, timeout=0.5)
        except httpx.HTTPError:
            break  # gone
        assert time.monotonic() < deadline, "the simulator outlived the demo"
        time.sleep(0.2)
