"""``fkj bench events [postgresql] [sqlite] [--subs N] [--events N] …``: commit-to-rest-hook
latency with N active subscriptions (default 100) and sustained notifications per second.

Writes go through the Repository in this process with the event side registered (the
dispatcher is woken after each commit); the rest-hook endpoint runs in its own process and
timestamps every notification event it receives. Latency: one write every 100 ms (×100
subscriptions = 1,000 notifications/s, one Bundle each). Sustained: 2,000 writes in
transactions of 100, until every subscription received all of them. Targets (PostgreSQL):
p99 ≤ 200 ms, ≥ 1,000 notifications/s; the exit status is 1 if one is missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import httpx
import orjson
from common import database, free_port, percentile, summary_ms

RECEIVER = r"""
# a lean rest-hook endpoint (asyncio, HTTP/1.1 keep-alive): timestamps every notification
# event it receives; GET / answers {subscription: {event-number: time}}
import asyncio, sys, time
import orjson
seen = {}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

def record(body, now):
    params = orjson.loads(body)["entry"][0]["resource"]["parameter"]
    sub = params[0]["valueReference"]["reference"]
    mine = seen.setdefault(sub, {})
    for p in params:
        if p["name"] == "notification-event":
            for x in p["part"]:
                if x["name"] == "event-number":
                    mine.setdefault(int(x["valueString"]), now)

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    n = int(line[15:])
            body = await reader.readexactly(n) if n else b""
            if head.startswith(b"GET"):
                out = orjson.dumps(seen, option=orjson.OPT_NON_STR_KEYS)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
            else:
                record(body, time.time())
                writer.write(OK)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=256)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""
BP = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"


TARGET_P99_MS = 200.0
TARGET_RATE = 1000.0


def run(backend: str, a) -> dict:
    from sqlalchemy import func, select

    from fkj.app import build_fkj
    from fkj.config import Settings
    from fkj.events.delivery import EventConfig
    from fkj.events.tables import subscription_state as S
    from fkj.events.wiring import register_events
    from fkj.repository.repository import Repository
    from fkj.store.backend import scope
    from fkj.types import Principal

    port = free_port()
    recv = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE)
    recv.stdout.readline()
    endpoint = f"http://127.0.0.1:{port}/hook"
    try:
        with database(backend) as url:
            fkj = build_fkj(Settings(database_url=url, base_url="http://bench"))
            worker = register_events(fkj, EventConfig(connections=a.connections, poll=0.2,
                                                      max_count=a.max_count, nats_url=None,
                                                      # the receiver runs on loopback
                                                      allow_http=True, allow_private=True))
            repo = Repository(fkj.services, Principal.system("4601"), "4601")
            with repo.transaction():
                for _ in range(a.subs):
                    repo.create({"resourceType": "Subscription", "status": "requested",
                                 "reason": "bench", "criteria":
                                 "http://fkj.no/fhir/SubscriptionTopic/resource-change",
                                 "_criteria": {"extension": [{
                                     "url": BP + "backport-filter-criteria",
                                     "valueString": "Patient"}]},
                                 "channel": {"type": "rest-hook", "endpoint": endpoint,
                                             "payload": "application/fhir+json",
                                             "_payload": {"extension": [{
                                                 "url": BP + "backport-payload-content",
                                                 "valueCode": "id-only"}]}}})

            def stats():
                return orjson.loads(httpx.get(f"http://127.0.0.1:{port}/").content)

            def wait_for(n, timeout=300):
                deadline = time.time() + timeout
                while time.time() < deadline:
                    s = stats()
                    if len(s) >= a.subs and all(len(v) >= n for v in s.values()):
                        return s
                    time.sleep(0.05)
                raise SystemExit(f"timeout: not every subscription got {n} notifications")

            # every subscription did its handshake (is active)
            deadline = time.time() + 60
            while time.time() < deadline:
                with scope(fkj.services.engine, "4601") as conn:
                    n = conn.execute(select(func.count()).select_from(S).where(
                        S.c.status == "active")).scalar()
                if n == a.subs:
                    break
                time.sleep(0.05)

            # 1. latency: one write at a time, commit → receipt at each subscription's endpoint
            committed = {}
            for i in range(1, a.latency_events + 1):
                repo.create({"resourceType": "Patient", "name": [{"family": f"L{i}"}]})
                committed[i] = time.time()
                time.sleep(a.interval)
            s = wait_for(a.latency_events)
            lat = [s[sub][str(i)] - committed[i] for sub in s for i in committed]
            p99 = percentile(lat, 99) * 1000

            # 2. throughput: a burst of writes (transactions of 100) until all are delivered
            t0 = time.time()
            written = 0
            while written < a.events:
                with repo.transaction():
                    for _ in range(min(100, a.events - written)):
                        repo.create({"resourceType": "Patient", "name": [{"family": "T"}]})
                        written += 1
            t_write = time.time() - t0
            wait_for(a.latency_events + a.events)
            elapsed = time.time() - t0
            total = a.events * a.subs
            worker.stop()
            fkj.services.engine.dispose()
    finally:
        recv.kill()
        recv.wait()
    rate = total / elapsed
    print(f"events {backend}: {a.subs} active rest-hook subscriptions (id-only) to one "
          f"endpoint, up to {a.connections} connections")
    print(f"  commit → rest-hook latency, one write every {a.interval * 1000:.0f} ms "
          f"({a.subs / a.interval:,.0f} notifications/s, a Bundle each):")
    print(f"    {summary_ms(lat)}")
    print(f"  sustained: {a.events} events × {a.subs} subscriptions = {total:,} notifications "
          f"in {elapsed:.2f} s → {rate:,.0f} notifications/s (writes took {t_write:.2f} s; "
          f"Bundles of up to {a.max_count})")
    if backend == "postgresql":
        print(f"    targets (PostgreSQL): p99 ≤ {TARGET_P99_MS:.0f} ms → "
              f"{p99:.1f} ms = {p99 / TARGET_P99_MS:.2f}× the limit "
              f"{'OK' if p99 <= TARGET_P99_MS else 'MISSED'};  "
              f"≥ {TARGET_RATE:,.0f} notifications/s → {rate / TARGET_RATE:.1f}× the target "
              f"{'OK' if rate >= TARGET_RATE else 'MISSED'}")
    return {"p99": p99, "rate": rate}


def main() -> int:
    ap = argparse.ArgumentParser(prog="fkj bench events")
    ap.add_argument("backends", nargs="*", metavar="sqlite|postgresql",
                    help="default: postgresql, then sqlite")
    ap.add_argument("--subs", type=int, default=100)
    ap.add_argument("--latency-events", type=int, default=100)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=32,
                    help="concurrent connections per endpoint")
    ap.add_argument("--max-count", type=int, default=100,
                    help="notifications per Bundle at most")
    #: seconds between the latency writes: 0.1 s × 100 subscriptions = 1,000 notifications/s
    ap.add_argument("--interval", type=float, default=0.1)
    a = ap.parse_args()
    for b in a.backends:
        if b not in ("sqlite", "postgresql"):
            ap.error(f"unknown backend {b!r}")
    missed = False
    for backend in a.backends or ["postgresql", "sqlite"]:
        r = run(backend, a)
        if backend == "postgresql":
            missed |= r["p99"] > TARGET_P99_MS or r["rate"] < TARGET_RATE
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
