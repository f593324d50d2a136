"""``fkj bench store``: write and read speed of the store over real HTTP, on SQLite and
PostgreSQL, beside the raw limit of each database.

Prints, per backend:
- sequential creates over HTTP (one client, one resource per request);
- transaction-Bundle ingest (Bundles of 1,000 Patient-sized resources);
- read-by-id latency at concurrency 1 and 8;
- the raw limit: the same JSON inserted by ``executemany`` into a bare table, and ours/raw.
Targets (issue #2): ingest ≥ 2,000 resources/s; read p50 ≤ 3 ms and p99 ≤ 15 ms at c=8.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from sqlalchemy import text

from common import database, patient, percentile, server  # noqa: E402
from fkj.store.engine import make_engine

SEQUENTIAL = 500
BUNDLES = 5
BUNDLE_SIZE = 1000
READS = 2000


def bench_backend(backend: str) -> dict:
    out = {}
    with database(backend) as url, server(url) as (base, token):
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        with httpx.Client(base_url=f"{base}/fhir/4601", headers=h, timeout=120) as c:
            for i in range(20):  # warm-up
                c.post("/Patient", content=orjson.dumps(patient(i)))
            t = time.perf_counter()
            ids = []
            for i in range(SEQUENTIAL):
                r = c.post("/Patient", content=orjson.dumps(patient(i)),
                           headers={"Prefer": "return=minimal"})
                assert r.status_code == 201, r.text
                ids.append(r.headers["Location"].split("/")[-3])
            out["sequential"] = SEQUENTIAL / (time.perf_counter() - t)

            bundles = [orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": patient(b * BUNDLE_SIZE + i), "request": {"method": "POST",
                                                                       "url": "Patient"}}
                for i in range(BUNDLE_SIZE)]}) for b in range(BUNDLES)]
            t = time.perf_counter()
            for body in bundles:
                r = c.post("", content=body)
                assert r.status_code == 200, r.text[:500]
            out["ingest"] = BUNDLES * BUNDLE_SIZE / (time.perf_counter() - t)
        analyze(url)
        out["read1"] = read_latencies(base, token, ids, 1)
        out["read8"] = read_latencies(base, token, ids, 8)
    with database(backend) as url:
        out["raw"] = raw_insert(url, backend)
    return out


def read_latencies(base, token, ids, concurrency):
    """Latency of GET by id. Uses wrk (C load generator, so the client does not steal the
    server's CPU) when installed, else an asyncio httpx client."""
    if shutil.which("wrk"):
        return wrk_latencies(base, token, ids, concurrency)
    return asyncio.run(httpx_latencies(base, token, ids, concurrency))


def wrk_latencies(base, token, ids, concurrency, seconds=8):
    here = Path(__file__).parent
    with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False) as f:
        f.write("\n".join(ids))
    env = {**os.environ, "IDS_FILE": f.name, "PREFIX": "/fhir/4601/Patient/"}
    if token:
        env["TOKEN"] = token
    out = subprocess.run(["wrk", "-t", str(min(concurrency, 2)), "-c", str(concurrency), "-d",
                          f"{seconds}s", "-s", str(here / "wrk_reads.lua"), base],
                         capture_output=True, text=True, env=env, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    p50, p95, p99, n, errors, duration = map(int, line.split()[1:])
    assert errors == 0, out
    return {"p50": p50 / 1000, "p95": p95 / 1000, "p99": p99 / 1000, "n": n,
            "rate": n / (duration / 1e6)}


async def httpx_latencies(base, token, ids, concurrency):
    h = {"Authorization": f"Bearer {token}"}
    lat: list[float] = []
    rnd = random.Random(1)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"{base}/fhir/4601", headers=h, limits=limits,
                                 timeout=30) as c:
        for _ in range(100):
            await c.get(f"/Patient/{rnd.choice(ids)}")

        async def worker(n):
            for _ in range(n):
                t = time.perf_counter()
                r = await c.get(f"/Patient/{rnd.choice(ids)}")
                lat.append(time.perf_counter() - t)
                assert r.status_code == 200

        per = READS // concurrency
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(per) for _ in range(concurrency)])
        rate = per * concurrency / (time.perf_counter() - t0)
    ms = [x * 1000 for x in lat]
    return {"p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
            "n": len(ms), "rate": rate}


def analyze(url: str) -> None:
    """Refresh planner statistics after the bulk load, as autovacuum would in production
    (a fresh PostgreSQL table without statistics can get a poor plan for minutes)."""
    engine = make_engine(url, app_role=False)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def raw_insert(url: str, backend: str) -> float:
    """The same JSON into a bare table with executemany: the database's own limit."""
    engine = make_engine(url, app_role=False)
    rows = [{"id": str(i), "content": orjson.dumps(patient(i)).decode()}
            for i in range(BUNDLES * BUNDLE_SIZE)]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE raw_bench (id varchar(64) primary key, content text)"))
    t = time.perf_counter()
    for start in range(0, len(rows), BUNDLE_SIZE):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO raw_bench (id, content) VALUES (:id, :content)"),
                         rows[start:start + BUNDLE_SIZE])
    rate = len(rows) / (time.perf_counter() - t)
    engine.dispose()
    return rate


def main(argv: list[str]) -> int:
    backends = [a for a in argv if a in ("sqlite", "postgresql")] or ["sqlite", "postgresql"]
    print("fkj bench store — over HTTP on loopback, one server process (uvicorn)")
    for backend in backends:
        r = bench_backend(backend)
        r1, r8 = r["read1"], r["read8"]
        p50_8, p99_8 = r8["p50"], r8["p99"]
        print(f"\n[{backend}]")
        print(f"  sequential create over HTTP      {r['sequential']:8.0f} resources/s")
        print(f"  transaction ingest (1,000/Bundle) {r['ingest']:8.0f} resources/s   "
              f"target ≥ 2,000  {'OK' if r['ingest'] >= 2000 else 'MISSED'}")
        print(f"  raw executemany, bare table       {r['raw']:8.0f} rows/s       "
              f"ours/raw = {r['ingest'] / r['raw']:.2f}")
        for c, x in ((1, r1), (8, r8)):
            print(f"  read by id, concurrency {c}: p50 {x['p50']:6.2f} ms  p95 {x['p95']:6.2f} ms"
                  f"  p99 {x['p99']:6.2f} ms  ({x['n']} requests, {x['rate']:.0f} req/s)")
        print(f"    target p50 ≤ 3 ms, p99 ≤ 15 ms: "
              f"{'OK' if p50_8 <= 3 and p99_8 <= 15 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
