"""Concurrent updates over real HTTP: optimistic locking lets exactly one win, and no
version is ever lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.api.helpers import FHIR, patient
from tests.conftest import auth_headers

CLIENTS = 8


def _client(live_server, fkj_app, tenant):
    return httpx.Client(base_url=f"{live_server.url}/fhir/{tenant}",
                        headers={**FHIR, **auth_headers(fkj_app, tenant)}, timeout=30)


def test_parallel_if_match_exactly_one_wins(live_server, fkj_app, tenant):
    with _client(live_server, fkj_app, tenant) as c:
        p = c.post("/Patient", json=patient()).json()
    url = f"/Patient/{p['id']}"
    for round_no in range(5):
        version = str(round_no + 1)

        def attempt(i):
            with _client(live_server, fkj_app, tenant) as c:
                body = {**p, "gender": ["male", "female"][i % 2]}
                return c.put(url, json=body, headers={"If-Match": f'W/"{version}"'}).status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            codes = list(pool.map(attempt, range(CLIENTS)))
        assert sorted(codes) == [200] + [412] * (CLIENTS - 1), codes
    with _client(live_server, fkj_app, tenant) as c:
        assert c.get(url).json()["meta"]["versionId"] == "6"


def test_parallel_blind_updates_lose_no_version(live_server, fkj_app, tenant):
    with _client(live_server, fkj_app, tenant) as c:
        p = c.post("/Patient", json=patient()).json()
    url = f"/Patient/{p['id']}"
    per_client = 6

    def worker(i):
        codes = []
        with _client(live_server, fkj_app, tenant) as c:
            for n in range(per_client):
                body = {**p, "name": [{"family": f"W{i}-{n}"}]}
                codes.append(c.put(url, json=body).status_code)
        return codes

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [code for codes in pool.map(worker, range(CLIENTS)) for code in codes]
    ok = results.count(200)
    # SQLite queues writers; PostgreSQL serialises them on the row lock: all succeed
    assert ok == CLIENTS * per_client, results
    with _client(live_server, fkj_app, tenant) as c:
        assert c.get(url).json()["meta"]["versionId"] == str(1 + ok)
        hist = c.get(f"{url}/_history", params={"_count": 1000}).json()
    versions = sorted(int(e["response"]["etag"][3:-1]) for e in hist["entry"])
    assert versions == list(range(1, ok + 2))
