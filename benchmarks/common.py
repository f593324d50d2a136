"""Shared benchmark plumbing: databases, a real server process, percentiles."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import text

from fkj.store.engine import make_engine
from fkj.store.migrate import upgrade
from fkj.store.tenants import create_tenant

PG_URL = os.environ.get("FKJ_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary_ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"p50 {percentile(ms, 50):6.2f} ms  p95 {percentile(ms, 95):6.2f} ms  "
            f"p99 {percentile(ms, 99):6.2f} ms  (n={len(ms)}, mean {statistics.fmean(ms):.2f})")


@contextmanager
def database(backend: str):
    """A fresh, migrated database with tenant 4601; yields its URL."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            url = f"sqlite:///{Path(d) / 'bench.sqlite'}"
            _prepare(url)
            yield url
        return
    schema = f"fkj_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_URL, app_role=False)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        _prepare(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _prepare(url: str) -> None:
    owner = make_engine(url, app_role=False)
    upgrade(owner)
    owner.dispose()
    engine = make_engine(url)
    create_tenant(engine, "4601", "Bergen")
    engine.dispose()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextmanager
def server(url: str, *, auth: bool = True, extra_env: dict | None = None):
    """Run ``fkj serve`` in its own process; yields (base_url, token)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FKJ_DATABASE_URL": url, "FKJ_DEMO": "1", "FKJ_BASE_URL": base,
           **(extra_env or {})}
    if not auth:
        env["FKJ_AUTH_DISABLED"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "fkj", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/fhir/4601/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server failed")
        token = None
        if auth:
            from fkj.security.dev import mint_dev_token
            engine = make_engine(url)
            token = mint_dev_token(engine, "4601", "system/*.cruds", demo=True, base_url=base)
            engine.dispose()
        yield base, token
    finally:
        proc.terminate()
        proc.wait(10)


def patient(i: int) -> dict:
    """A Patient of realistic size (~1 kB)."""
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "http://fkj.no/bench", "value": str(i)}],
        "active": True,
        "name": [{"use": "official", "family": f"Nordmann{i % 997}", "given": ["Kari", "Elise"]}],
        "telecom": [{"system": "phone", "value": f"+47 9{i % 10000000:07d}", "use": "mobile"}],
        "gender": "female" if i % 2 else "male",
        "birthDate": f"19{20 + i % 80:02d}-0{1 + i % 9}-1{i % 10}",
        "address": [{"use": "home", "line": [f"Storgata {i % 200}"], "city": "Bergen",
                     "postalCode": f"5{i % 1000:03d}", "district": "Bergen", "country": "NO"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                      "code": "M"}]},
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "nb"}]}}],
    }
