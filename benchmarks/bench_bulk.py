"""Bulk import and export throughput: ``fkj bench bulk [--small] [--n N] [sqlite|postgresql]``.

Import with full validation and indexing: 1,000,000 resources into PostgreSQL and 200,000
into SQLite by default (``--small``: 20,000 each). Prints resources/s, the raw limit (PostgreSQL
COPY / SQLite executemany of the same JSON into a bare table) and the ratio, where the time
per resource goes (validation, extraction, database), export resources/s, and the peak memory
(maxrss) of the import and export subprocesses. Targets: import ≥ 3,000/s, export ≥ 20,000/s,
memory < 1 GB.
"""

from __future__ import annotations

import json
import os
import resource as rlimit
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SIZES = {"postgresql": 1_000_000, "sqlite": 200_000}
SMALL = 20_000


def generate(directory: Path, n: int) -> int:
    """Deterministic NDJSON, ~n resources (ten per patient)."""
    try:
        from fkj.seed.generator import generate as seed_generate  # type: ignore
    except ImportError:
        seed_generate = None
    if seed_generate is not None:
        import orjson
        handles, count = {}, 0
        per_patient = max(1, sum(1 for _ in seed_generate("4601", 20, 42)) // 20)
        patients = max(1, n // per_patient)
        for r in seed_generate("4601", patients, 42):
            t = r["resourceType"]
            fh = handles.get(t) or handles.setdefault(t, open(directory / f"{t}.ndjson", "wb"))
            fh.write(orjson.dumps(r) + b"\n")
            count += 1
        for fh in handles.values():
            fh.close()
        return count
    from fkj.bulk.synthetic import write_ndjson
    return sum(write_ndjson(directory, max(1, n // 10)).values())


# ---------------------------------------------------------------------------- children
def child_import(url: str, directory: str) -> None:
    from fkj.bulk.importer import import_paths
    from fkj.config import Settings
    from fkj.store.engine import make_engine

    engine = make_engine(url)
    t0 = time.perf_counter()
    c0 = time.process_time()
    result = import_paths(engine, Settings(database_url=url), "4601", [directory])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"loaded": result.loaded, "failed": result.failed, "wall": wall, "cpu": cpu,
                      "fatal": result.fatal,
                      "maxrss_mb": rlimit.getrusage(rlimit.RUSAGE_SELF).ru_maxrss / 1024}))


def child_export(url: str, out: str) -> None:
    from fkj.bulk.exporter import ExportRequest, run_export
    from fkj.config import Settings
    from fkj.repository.repository import Repository
    from fkj.repository.services import Services
    from fkj.store.backend import now_us
    from fkj.store.engine import make_engine
    from fkj.types import Principal

    engine = make_engine(url)
    services = Services(engine=engine, settings=Settings(database_url=url))
    repo = Repository(services, Principal.system("4601", subject="bench"), "4601")
    t0 = time.perf_counter()
    c0 = time.process_time()
    result = run_export(repo, ExportRequest(transaction_time=now_us()), Path(out))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"exported": result.total, "wall": wall, "cpu": cpu,
                      "maxrss_mb": rlimit.getrusage(rlimit.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(*args: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- raw limit
def raw_limit(url: str, directory: Path) -> float:
    """Rows/s storing the same JSON lines into a bare table (COPY / executemany)."""
    from sqlalchemy import text

    from fkj.store.engine import make_engine

    files = sorted(directory.glob("*.ndjson"))
    engine = make_engine(url, app_role=False)
    n = 0
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_raw (tenant varchar(4), type varchar(64), "
                          "id varchar(64), content text, PRIMARY KEY (tenant, type, id))"))
        pg = conn.dialect.name == "postgresql"
        cur = conn.connection.driver_connection.cursor()
        import orjson
        for f in files:
            rows = []
            with open(f, "rb") as fh:
                for line in fh:
                    r = orjson.loads(line)
                    rows.append(("4601", r["resourceType"], r["id"], line.decode().rstrip("\n")))
                    if len(rows) >= 10000:
                        n += _raw_write(cur, pg, rows)
                        rows = []
            n += _raw_write(cur, pg, rows)
    elapsed = time.perf_counter() - t0
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_raw"))
    engine.dispose()
    return n / elapsed


def _raw_write(cur, pg: bool, rows) -> int:
    if not rows:
        return 0
    if pg:
        with cur.copy("COPY bench_raw (tenant, type, id, content) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        cur.executemany("INSERT INTO bench_raw VALUES (?, ?, ?, ?)", rows)
    return len(rows)


# ---------------------------------------------------------------------------- profile
def profile(directory: Path, sample: int = 3000) -> dict[str, float]:
    """µs per resource for validation, extraction and the whole prepare (no database)."""
    import orjson

    from fkj.config import Settings
    from fkj.model.identifiers import identifier_issues
    from fkj.model.validation import validate_resource
    from fkj.repository.repository import Repository
    from fkj.repository.services import Services
    from fkj.search.extract import extract
    from fkj.search.registry import default_registry
    from fkj.store.engine import make_engine
    from fkj.types import Principal

    res = []
    files = sorted(directory.glob("*.ndjson"))
    for f in files:  # the same number of lines from each file
        with open(f, "rb") as fh:
            for k, line in enumerate(fh):
                if k >= sample // len(files):
                    break
                res.append(orjson.loads(line))
    for r in res[:200]:  # warm up (compile validators)
        validate_resource(r)
        extract(r)
    out = {}
    t = time.perf_counter()
    for r in res:
        validate_resource(r)
        identifier_issues(r)
    out["validation"] = (time.perf_counter() - t) / len(res) * 1e6
    reg = default_registry()
    t = time.perf_counter()
    for r in res:
        extract(r, reg)
    out["extraction"] = (time.perf_counter() - t) / len(res) * 1e6
    services = Services(engine=None, settings=Settings(database_url="sqlite://"))  # type: ignore[arg-type]
    services.extras["registry"] = reg
    repo = Repository(services, Principal.system("4601"), "4601")
    t = time.perf_counter()
    for r in res:
        repo.prepare(r, rtype=None, rid=r["id"], version=1, method="PUT")
    out["prepare"] = (time.perf_counter() - t) / len(res) * 1e6
    t = time.perf_counter()
    for r in res:
        orjson.loads(orjson.dumps(r))
    out["parse"] = (time.perf_counter() - t) / len(res) * 1e6
    return out


# ---------------------------------------------------------------------------- main
def bench(backend: str, n: int) -> None:
    from common import database

    print(f"\n== {backend}: {n:,} resources ==")
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "ndjson"
        data.mkdir()
        t = time.perf_counter()
        count = generate(data, n)
        print(f"generated {count:,} resources in {time.perf_counter() - t:.1f} s "
              f"({sum(f.stat().st_size for f in data.iterdir()) / 1e6:.0f} MB NDJSON)")
        with database(backend) as url:
            limit = raw_limit(url, data)
            r = run_child("import", url, str(data))
            if r["fatal"] or r["failed"]:
                print(f"  !! import problems: {r}")
            rate = r["loaded"] / r["wall"]
            print(f"import   {r['loaded']:>9,} in {r['wall']:7.1f} s = {rate:8,.0f} resources/s "
                  f"(cpu {r['cpu']:.1f} s = {r['loaded'] / max(r['cpu'], 1e-9):,.0f}/s of CPU)  "
                  f"maxrss {r['maxrss_mb']:.0f} MB  [target 3,000/s]")
            print(f"raw limit ({'COPY' if backend == 'postgresql' else 'executemany'} of the "
                  f"same JSON, bare table) {limit:,.0f} rows/s → import is "
                  f"{rate / limit:.1%} of it")
            e = run_child("export", url, str(Path(d) / "export"))
            print(f"export   {e['exported']:>9,} in {e['wall']:7.1f} s = "
                  f"{e['exported'] / e['wall']:8,.0f} resources/s  maxrss {e['maxrss_mb']:.0f} MB "
                  "[target 20,000/s]")
        p = profile(data)
        per = 1e6 / rate
        db_us = max(0.0, per - p["prepare"])
        print(f"where an imported resource's {per:,.0f} µs (wall) go: validation "
              f"{p['validation']:.0f} µs, extraction {p['extraction']:.0f} µs, whole prepare "
              f"{p['prepare']:.0f} µs (incl. JSON {p['parse']:.0f} µs); database, job "
              f"bookkeeping and the scan pass ≈ {db_us:.0f} µs")


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        {"import": child_import, "export": child_export}[argv[1]](*argv[2:])
        return
    small = "--small" in argv
    n_override = None
    if "--n" in argv:
        n_override = int(argv[argv.index("--n") + 1])
    backends = [a for a in argv if a in SIZES] or ["sqlite", "postgresql"]
    for b in backends:
        bench(b, n_override or (SMALL if small else SIZES[b]))


if __name__ == "__main__":
    main(sys.argv[1:])
