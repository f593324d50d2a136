"""``fkj bench auth``: what authentication costs on the hottest path, read by id.

Per backend, one database seeded with 1,000 Patients; the server is started alternately with
authentication on (a bearer token verified on every request) and off (``FKJ_AUTH_DISABLED=1``
with ``FKJ_DEMO=1``), ``ROUNDS`` times each, and read-by-id latency is measured with wrk
(``wrk_reads.lua``; asyncio httpx if wrk is missing) at concurrency 1. Prints the median p50
of each mode and the difference. Target (issue: SMART on FHIR): auth adds ≤ 0.3 ms p50.

    fkj bench auth [sqlite] [postgresql]
"""

from __future__ import annotations

import statistics
import sys

import httpx
import orjson

from bench_store import analyze, read_latencies  # noqa: E402
from common import database, patient, server  # noqa: E402

SEED = 1000
ROUNDS = 3
TARGET_MS = 0.3


def seed(url: str) -> list[str]:
    with server(url) as (base, token):
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": patient(i), "request": {"method": "POST", "url": "Patient"}}
            for i in range(SEED)]}
        with httpx.Client(base_url=f"{base}/fhir/4601", headers=h, timeout=120) as c:
            r = c.post("", content=orjson.dumps(bundle))
            assert r.status_code == 200, r.text[:500]
            ids = [e["response"]["location"].split("/")[-3] for e in r.json()["entry"]]
    analyze(url)
    return ids


def measure(url: str, ids: list[str], auth: bool) -> dict:
    with server(url, auth=auth) as (base, token):
        # sanity: the mode is what we think it is
        plain = httpx.get(f"{base}/fhir/4601/Patient/{ids[0]}", timeout=10).status_code
        assert plain == (401 if auth else 200), f"auth={auth} but unauthenticated read → {plain}"
        read_latencies(base, token, ids[:200], 1)  # warm-up (caches, connections, JIT-free)
        return read_latencies(base, token, ids, 1)


def bench_backend(backend: str) -> dict:
    runs: dict[bool, list[dict]] = {True: [], False: []}
    with database(backend) as url:
        ids = seed(url)
        for _ in range(ROUNDS):
            for auth in (True, False):
                runs[auth].append(measure(url, ids, auth))
    return runs


def main(argv: list[str]) -> int:
    backends = [a for a in argv if a in ("sqlite", "postgresql")] or ["sqlite", "postgresql"]
    print("fkj bench auth — read by id over HTTP on loopback, concurrency 1, "
          f"{ROUNDS} alternating rounds per mode")
    ok_all = True
    for backend in backends:
        runs = bench_backend(backend)
        on = statistics.median(r["p50"] for r in runs[True])
        off = statistics.median(r["p50"] for r in runs[False])
        diff = on - off
        ok = diff <= TARGET_MS
        ok_all &= ok
        print(f"\n[{backend}]")
        for label, key in (("auth on ", True), ("auth off", False)):
            rs = runs[key]
            rounds = ", ".join(f"{r['p50']:.3f}" for r in rs)
            print(f"  {label}: p50 {statistics.median(r['p50'] for r in rs):6.3f} ms  "
                  f"(rounds: {rounds})  "
                  f"p99 {statistics.median(r['p99'] for r in rs):6.3f} ms  "
                  f"{sum(r['n'] for r in rs)} requests")
        print(f"  auth adds {diff * 1000:+.0f} µs p50   target ≤ {TARGET_MS * 1000:.0f} µs  "
              f"{'OK' if ok else 'MISSED'}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
