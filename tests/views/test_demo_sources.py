"""``fkj demo`` starts the three national-service simulators as processes of their own and
points the demo municipality's sources at them, so the demo's $oversikt shows federated
items."""

from __future__ import annotations

import socket

from starlette.testclient import TestClient

from tests.views.conftest import PATIENTS, headers, overview, section_items


def _free_ports(n: int) -> int:
    """A first port with n free ports after it (best effort)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        first = s.getsockname()[1]
        s.close()
        if first + n < 65535:
            return first


def test_demo_simulators_feed_the_overview(asgi_app, views_app, db):
    from fkj.cli.demo import start_simulators
    from tests.views.conftest import seed

    t = seed(db, views_app)
    sims = start_simulators(db.engine, "127.0.0.1", _free_ports(3), t, PATIENTS)
    try:
        assert [k for k, _, _ in sims] == ["kjernejournal", "pll", "provesvar"]
        assert all(proc.poll() is None for _, _, proc in sims)  # separate, running processes
        c = TestClient(asgi_app, base_url="http://testserver")
        b = overview(c, t, f"{t}-pat-0", headers(views_app, t)).json()
        from fkj.sources.base import item_sources
        urls = {url for _, url, _ in sims}
        # every item lists its sources (a fact held locally too is shown once, with both)
        federated = {u for e in b["entry"] for u, _ in item_sources(e["resource"])} & urls
        assert federated == urls, federated
        assert not [e for e in b["entry"] if e["resource"]["resourceType"] == "OperationOutcome"]
    finally:
        for _, _, proc in sims:
            proc.terminate()
            proc.wait(10)
