"""``fkj bench search [sqlite|postgresql] [-- --small] [-- --size N]`` (or ``small``): search latency on a generated
tenant, over real HTTP against a ``fkj serve`` process.

Per backend:
- loads the synthetic tenant of ``search_data`` (default 1,000,000 resources on PostgreSQL,
  200,000 on SQLite; ``--small``: 20,000) through the HTTP API in transaction Bundles of 1,000
  ``PUT Type/id`` entries from 2 client threads, prints the load rate, then runs ANALYZE;
- p50/p95/p99 of sequential requests (one httpx client, ≥ 200 samples each, parameters varied)
  for identifier, name prefix, Observation subject+code+date, ServiceRequest subject+status,
  a chained search, an _include search, and $everything of patients with 300 resources;
- page 1 vs page 200 of a ≥ 10,000-result search, following ``next`` links with _count=50;
- ingest with indexing vs without: the first 20,000 resources into a fresh database, once with
  indexing (timed during the main load) and once by a server started with FKJ_INDEXING=0;
- the query plan of the slowest search (EXPLAIN ANALYZE / EXPLAIN QUERY PLAN), its SQL
  captured in-process through ``Repository.search``.
Targets (issue): identifier p99 ≤ 20 ms; other searches p95 ≤ 50 ms; $everything p95 ≤ 150 ms;
page 200 ≤ 2 × page 1; ingest with indexing ≥ 50 % of ingest without.
"""

from __future__ import annotations

import random
import sys
import threading
import time

import httpx
import orjson
from sqlalchemy import event, text

from bench_store import analyze
from common import database, percentile, server
from fkj.store.engine import make_engine
from search_data import LOINC, OBS_CODES, PNR_SYSTEM, Population, bundles

SIZES = {"postgresql": 1_000_000, "sqlite": 200_000}
SMALL = 20_000
RATIO_N = 20_000  # resources loaded with and without indexing
SAMPLES = 200
WARMUP = 10
BUNDLE = 1000
THREADS = 2
TENANT = "4601"


# ---------------------------------------------------------------------------- loading
def long_token(url: str, base: str) -> str:
    from fkj.security.dev import mint_dev_token
    engine = make_engine(url)
    try:
        return mint_dev_token(engine, TENANT, "system/*.cruds", demo=True, base_url=base,
                              lifetime=12 * 3600)
    finally:
        engine.dispose()


def load(base: str, token: str, pop: Population, *, mark: int = RATIO_N,
         progress: int = 0) -> dict:
    """Each of THREADS clients sends its own stream of transaction Bundles, in order (the
    streams partition the patients, so no Bundle refers to one another client is sending)."""
    state = {"n": 0, "mark_t": None, "error": None, "next_report": progress}
    lock = threading.Lock()
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json",
         "Prefer": "return=minimal"}
    t0 = time.perf_counter()

    def worker(stream: int):
        try:
            with httpx.Client(base_url=f"{base}/fhir/{TENANT}", headers=h, timeout=600) as c:
                for b in bundles(pop.resources(stream, THREADS), BUNDLE):
                    if state["error"]:
                        return
                    r = c.post("", content=orjson.dumps(b))
                    with lock:
                        if r.status_code != 200:
                            state["error"] = f"HTTP {r.status_code}: {r.text[:800]}"
                            return
                        state["n"] += len(b["entry"])
                        if state["mark_t"] is None and state["n"] >= mark:
                            state["mark_t"] = time.perf_counter() - t0
                        if progress and state["n"] >= state["next_report"]:
                            el = time.perf_counter() - t0
                            print(f"    … {state['n']:>9,} loaded, {state['n'] / el:6.0f}/s",
                                  flush=True)
                            state["next_report"] += progress
        except Exception as e:  # noqa: BLE001 - reported by the caller
            state["error"] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"]:
        raise RuntimeError(f"load failed: {state['error']}")
    elapsed = time.perf_counter() - t0
    n = state["n"]
    mark_t = state["mark_t"] or elapsed
    return {"n": n, "seconds": elapsed, "rate": n / elapsed,
            "mark_rate": min(mark, n) / mark_t}


def settle(url: str) -> str:
    """After the bulk load, what the database does by itself in production: planner
    statistics (SQLite: ANALYZE, which ``fkj serve`` runs at start), and on PostgreSQL also
    the visibility map autovacuum sets on insert-only tables (VACUUM), without which the
    covering lookup indexes cannot be read index-only."""
    if not url.startswith("postgresql"):
        analyze(url)
        # the server's StatisticsWatcher (fkj.store.maintenance) renews its pooled
        # connections within its interval, so that they plan with these statistics
        from fkj.store.maintenance import WATCH_INTERVAL
        time.sleep(WATCH_INTERVAL + 1)
        return f"ANALYZE (+ {WATCH_INTERVAL + 1:.0f} s for the server to pick them up)"
    engine = make_engine(url, app_role=False)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
    finally:
        engine.dispose()
    return "VACUUM (ANALYZE)"


def index_rows(url: str) -> int:
    engine = make_engine(url, app_role=False)
    try:
        with engine.connect() as conn:
            return sum(conn.execute(text(f"SELECT count(*) FROM {t} WHERE tenant = :t"),
                                    {"t": TENANT}).scalar_one()
                       for t in ("idx_token", "idx_string", "idx_reference", "idx_date"))
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------- queries
def query_sets(pop: Population, rng: random.Random) -> dict[str, list[tuple[str, list]]]:
    """Per query name: SAMPLES + WARMUP (path, params) pairs with varied parameters."""
    pts = pop.complete_patients
    heavy = [p for p in pts if p.heavy]
    k = SAMPLES + WARMUP
    codes = [c[0] for c in OBS_CODES]
    weights = [c[6] for c in OBS_CODES]

    def code():
        return f"{LOINC}|{rng.choices(codes, weights)[0]}"

    def pick():
        return rng.choice(pts)

    out: dict[str, list] = {}
    out["Patient by identifier"] = [
        ("Patient", [("identifier", f"{PNR_SYSTEM}|{pick().pnr}")]) for _ in range(k)]
    out["Patient by name prefix"] = [
        ("Patient", [("name", p.family[:rng.randint(3, 5)])]) for p in (pick() for _ in range(k))]
    obs = []
    for _ in range(k):
        y = rng.randint(2015, 2023)
        obs.append(("Observation", [("subject", f"Patient/{pick().id}"), ("code", code()),
                                    ("date", f"ge{y}-01-01"), ("date", f"lt{y + 3}-01-01")]))
    out["Observation subject+code+date"] = obs
    out["ServiceRequest subject+status"] = [
        ("ServiceRequest", [("subject", f"Patient/{pick().id}"), ("status", "active")])
        for _ in range(k)]
    out["chained subject:Patient.identifier"] = [
        ("Observation", [("subject:Patient.identifier", f"{PNR_SYSTEM}|{pick().pnr}")])
        for _ in range(k)]
    out["_include Observation:subject"] = [
        ("Observation", [("code", code()),
                         ("date", f"{rng.randint(2015, 2025)}-{rng.randint(1, 12):02d}"),
                         ("_include", "Observation:subject")]) for _ in range(k)]
    # the whole compartment in one Bundle (_count above its 300 resources), not a first page
    out["$everything (300 resources)"] = [
        (f"Patient/{rng.choice(heavy).id}/$everything", [("_count", "1000")])
        for _ in range(k)] if heavy else []
    return out


def measure(c: httpx.Client, samples: list[tuple[str, list]]):
    """Sequential requests; returns (latencies, mean hits, error or None)."""
    lat, hits = [], []
    for i, (path, params) in enumerate(samples):
        t = time.perf_counter()
        r = c.get(f"/{path}", params=params)
        dt = time.perf_counter() - t
        if r.status_code != 200:
            return lat, 0, f"HTTP {r.status_code} for {path}?{params}: {r.text[:300]}"
        if i >= WARMUP:
            lat.append(dt)
            b = r.json()
            hits.append(b.get("total", len(b.get("entry", []))))
    return lat, (sum(hits) / len(hits) if hits else 0), None


PAGE_SIZE = 50
PAGES = 200
#: results page 200 needs: it holds results 9,951 … 10,000
PAGING_MIN = (PAGES - 1) * PAGE_SIZE + 1


def obs_code_counts(c: httpx.Client, pop: Population) -> dict[str, int]:
    """Observations per LOINC code: counted while the tenant was generated, or (when this
    process generated none, e.g. a reused database) asked of the server (_summary=count)."""
    counts = dict(pop.obs_codes)
    if counts:
        return counts
    for code in (k[0] for k in OBS_CODES):
        r = c.get("/Observation", params=[("code", f"{LOINC}|{code}"), ("_summary", "count")])
        r.raise_for_status()
        counts[code] = r.json().get("total", 0)
    return counts


def paging_codes(counts: dict[str, int]) -> list[str]:
    """The fewest LOINC codes whose Observations number at least 10,000: the least common
    single code with that many, else the most common codes until the sum reaches it. Empty
    when the whole tenant has fewer (then there is no such search to page through)."""
    single = sorted((n, k) for k, n in counts.items() if n >= 10_000)
    if single:
        return [single[0][1]]
    chosen, s = [], 0
    for k, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if n <= 0:
            break
        chosen.append(k)
        s += n
        if s >= 10_000:
            return chosen
    return []


def paging(c: httpx.Client, pop: Population) -> dict:
    """Page 1 vs page 200 (_count=50) of a search with ≥ 10,000 results, the count confirmed
    by the server (_summary=count) before paging."""
    counts = obs_code_counts(c, pop)
    chosen = paging_codes(counts)
    if not chosen:
        return {"skip": f"the tenant has {sum(counts.values()):,} Observations, fewer than the "
                        "10,000 a 10,000-result search needs"}
    code = ",".join(f"{LOINC}|{k}" for k in chosen)
    expected = sum(counts[k] for k in chosen)
    r = c.get("/Observation", params=[("code", code), ("_summary", "count")])
    assert r.status_code == 200, r.text[:500]
    server_total = r.json().get("total")
    if server_total != expected or server_total < PAGING_MIN:
        return {"error": f"Observation?code=<{len(chosen)} codes> counts {server_total} on the "
                         f"server, expected {expected:,} (≥ {PAGING_MIN:,})"}
    params = [("code", code), ("_count", str(PAGE_SIZE))]
    t = time.perf_counter()
    r = c.get("/Observation", params=params)
    first_t = time.perf_counter() - t
    first = r.url
    assert r.status_code == 200, r.text[:500]
    total = r.json().get("total")
    url, page, walk = first, 1, [first_t]
    body = r.json()
    while page < PAGES:
        nxt = next((lk["url"] for lk in body.get("link", []) if lk["relation"] == "next"), None)
        if nxt is None:
            return {"error": f"no next link after page {page} (total {total}, expected "
                             f"{expected})"}
        t = time.perf_counter()
        r = c.get(nxt)
        walk.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text[:500]
        body, url, page = r.json(), nxt, page + 1
    if len(body.get("entry", [])) != PAGE_SIZE:
        return {"error": f"page {PAGES} has {len(body.get('entry', []))} entries, not {PAGE_SIZE}"}
    p1, p200 = [], []
    for _ in range(30):
        for u, acc in ((first, p1), (url, p200)):
            t = time.perf_counter()
            c.get(u)
            acc.append(time.perf_counter() - t)
    return {"query": f"Observation?code=<{len(chosen)} LOINC code(s)>&_count={PAGE_SIZE}",
            "total": total if total is not None else f"{server_total} by _summary=count",
            "p1": percentile(p1, 50), "p200": percentile(p200, 50),
            "walk": sum(walk), "walk_p1": first_t, "walk_p200": walk[-1]}


# ---------------------------------------------------------------------------- query plans
def explain(url: str, base: str, rtype: str, params: list) -> list[str]:
    """Re-run the search in-process, capture its SQL, and explain the slowest statement."""
    from fkj.config import Settings
    from fkj.repository.repository import Repository
    from fkj.repository.services import Services
    from fkj.store.backend import scope
    from fkj.types import Principal

    engine = make_engine(url)
    pg = engine.dialect.name == "postgresql"
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    services = Services(engine=engine, settings=Settings(database_url=url, base_url=base))
    repo = Repository(services, Principal.system(TENANT), TENANT)
    repo.search(rtype, params, default_count=50, max_count=1000)  # warm caches/registries
    event.listen(engine, "before_cursor_execute", capture)
    repo.search(rtype, params, default_count=50, max_count=1000)
    event.remove(engine, "before_cursor_execute", capture)
    stmts = [(s, p) for s, p in captured if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    out = []
    try:
        timed = []
        with scope(engine, TENANT) as conn:
            for s, p in stmts:
                t = time.perf_counter()
                conn.exec_driver_sql(s, p).fetchall()
                timed.append((time.perf_counter() - t, s, p))
            timed.sort(key=lambda x: -x[0])
            out.append(f"  {len(stmts)} SELECT statement(s); times: "
                       + ", ".join(f"{x[0] * 1000:.1f} ms" for x in timed))
            if not timed:
                return out
            dt, s, p = timed[0]
            sql = " ".join(s.split())
            out.append(f"  slowest statement ({dt * 1000:.1f} ms): {sql[:1800]}"
                       + (" …" if len(sql) > 1800 else ""))
            out.append(f"  parameters: {str(p)[:400]}")
            if pg:
                rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + s, p).all()
                out += ["    " + r[0] for r in rows]
            else:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s, p).all()
                depth = {0: -1}
                for rid, parent, _, detail in rows:
                    depth[rid] = depth.get(parent, -1) + 1
                    out.append("    " + "  " * depth[rid] + detail)
    finally:
        engine.dispose()
    return out


# ---------------------------------------------------------------------------- driver
def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def bench_backend(backend: str, total: int) -> None:
    t_start = time.perf_counter()
    pop = Population(total)
    print(f"\n[{backend}] {total:,} resources, {len(pop.patients):,} patients "
          f"({sum(p.heavy for p in pop.patients)} with 300 resources)", flush=True)
    with database(backend) as url, server(url) as (base, _):
        token = long_token(url, base)
        ld = load(base, token, pop, progress=0 if total <= 50_000 else 100_000)
        print(f"  load: {ld['n']:,} resources in {ld['seconds']:.0f} s = {ld['rate']:.0f} "
              f"resources/s (Bundles of {BUNDLE} PUTs, {THREADS} client threads); first "
              f"{min(RATIO_N, ld['n']):,}: {ld['mark_rate']:.0f}/s", flush=True)
        t = time.perf_counter()
        what = settle(url)
        print(f"  {what}: {time.perf_counter() - t:.1f} s")
        print("  " + ", ".join(f"{k} {v:,}" for k, v in pop.types.most_common()))

        rng = random.Random(4601)
        sets = query_sets(pop, rng)
        results = {}
        h = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        with httpx.Client(base_url=f"{base}/fhir/{TENANT}", headers=h, timeout=120) as c:
            for name, samples in sets.items():
                if not samples:
                    print(f"  {name:36s} no patient with 300 resources at this size")
                    continue
                lat, hits, err = measure(c, samples)
                if err:
                    if name.startswith("$everything") and " 404" in err[:9]:
                        print(f"  {name:36s} not available (404)")
                    else:
                        print(f"  {name:36s} FAILED: {err}")
                    continue
                ms = [x * 1000 for x in lat]
                p50, p95, p99 = (percentile(ms, q) for q in (50, 95, 99))
                if name == "Patient by identifier":
                    target, ok = "p99 ≤ 20", p99 <= 20
                elif name.startswith("$everything"):
                    target, ok = "p95 ≤ 150", p95 <= 150
                else:
                    target, ok = "p95 ≤ 50", p95 <= 50
                results[name] = (p95, samples[WARMUP:][max(range(len(ms)), key=ms.__getitem__)])
                print(f"  {name:36s} p50 {p50:7.2f}  p95 {p95:7.2f}  p99 {p99:7.2f} ms  "
                      f"(n={len(ms)}, ~{hits:.0f} hits)  target {target}: {verdict(ok)}",
                      flush=True)
            pg_res = paging(c, pop)
        if "skip" in pg_res:
            print(f"  paging: not measured: {pg_res['skip']}")
        elif "error" in pg_res:
            print(f"  paging: FAILED: {pg_res['error']}")
        else:
            ratio = pg_res["p200"] / pg_res["p1"]
            print(f"  paging {pg_res['query']} (total {pg_res['total']}): page 1 "
                  f"{pg_res['p1'] * 1000:.2f} ms, page 200 {pg_res['p200'] * 1000:.2f} ms "
                  f"(p50 of 30), ratio {ratio:.2f}  target ≤ 2: {verdict(ratio <= 2)}; "
                  f"walk of 200 pages {pg_res['walk']:.1f} s")

        searches = {k: v for k, v in results.items() if not k.startswith("$everything")}
        if searches:
            name, (p95, (path, params)) = max(searches.items(), key=lambda kv: kv[1][0])
            q = "&".join(f"{k}={v}" for k, v in params)
            print(f"  slowest search by p95: {name} ({p95:.1f} ms); plan of its slowest sample "
                  f"{path}?{q}")
            try:
                for line in explain(url, base, path, params):
                    print(line)
            except Exception as e:  # the plan is a diagnostic; never fail the run for it
                print(f"  (could not explain: {type(e).__name__}: {e})")
    load_s = ld["seconds"]

    n = min(RATIO_N, total)
    with database(backend) as url, server(url, extra_env={"FKJ_INDEXING": "0"}) as (base, _):
        token = long_token(url, base)
        off = load(base, token, Population(n), mark=n)
        rows = index_rows(url)
    ratio = ld["mark_rate"] / off["rate"]
    note = "" if rows == 0 else (f"  WARNING: the server ignored FKJ_INDEXING=0 "
                                 f"({rows:,} index rows written)")
    print(f"  ingest of the first {n:,}: indexed {ld['mark_rate']:.0f}/s, FKJ_INDEXING=0 "
          f"{off['rate']:.0f}/s, ratio {ratio:.2f}  target ≥ 0.50: {verdict(ratio >= 0.5)}"
          + note)
    print(f"  [{backend}] runtime {time.perf_counter() - t_start:.0f} s (load {load_s:.0f} s)")


def main(argv: list[str]) -> int:
    backends = [a for a in argv if a in ("sqlite", "postgresql")] or ["sqlite", "postgresql"]
    small = "--small" in argv or "small" in argv
    size = None
    if "--size" in argv:
        size = int(argv[argv.index("--size") + 1].replace("_", ""))
    print("fkj bench search — over HTTP on loopback, one server process (uvicorn); "
          "latencies from one sequential httpx client" + (" (--small)" if small else ""))
    t0 = time.perf_counter()
    for backend in backends:
        bench_backend(backend, size or (SMALL if small else SIZES[backend]))
    print(f"\ntotal runtime {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
