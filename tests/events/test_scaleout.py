"""Several processes on one PostgreSQL deliver each notification once per subscription, and
the NATS JetStream bridge publishes each committed event exactly once (a real nats-server,
started by the ``nats_url`` fixture)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from sqlalchemy import update

from tests.events.conftest import FHIR, event_numbers, post, subscription

WORKER = """
import sys
from fkj.app import build_fkj
from fkj.config import Settings
from fkj.events.delivery import EventConfig
from fkj.events.wiring import register_events
fkj = build_fkj(Settings(database_url=sys.argv[1], base_url="http://testserver"))
worker = register_events(fkj, EventConfig(poll=0.05, retry_base=0.05, retry_max=0.3,
                                          start=True, nats_url=None, allow_http=True,
                                          allow_private=True))  # the receiver: loopback
print("ready", flush=True)
sys.stdin.readline()  # "stop"
worker.stop()
print(worker.sent, flush=True)
"""


def _sid(bundle: dict) -> str:
    ref = bundle["entry"][0]["resource"]["parameter"][0]["valueReference"]["reference"]
    return ref.rsplit("/", 1)[1]


def test_two_processes_deliver_each_notification_once(db, ev_client, receiver, events):
    if db.backend != "postgresql":
        pytest.skip("several server processes share a PostgreSQL database, not SQLite")
    c = ev_client
    events.stop()  # only the two worker processes deliver
    procs = []
    try:
        subs = [post(c, subscription("resource-change", receiver.url + f"?s={i}",
                                     filters=["Patient"], max_count=5)) for i in range(6)]
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-c", WORKER, db.url],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          env={**os.environ}))
        for p in procs:
            assert p.stdout.readline().strip() == b"ready"
        for n in range(6):
            tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": {"resourceType": "Patient", "name": [{"family": f"P{n}-{i}"}]},
                 "request": {"method": "POST", "url": "Patient"}} for i in range(20)]}
            assert c.post(c.base, json=tx, headers=FHIR).status_code == 200
            time.sleep(0.05)

        def per_sub(r):
            out = {s["id"]: [] for s in subs}
            for b in r.bundles("event-notification"):
                out[_sid(b)] += event_numbers([b])
            return out

        assert receiver.wait(lambda r: all(len(v) >= 120 for v in per_sub(r).values()), 40)
        sent = []
        for p in procs:
            p.stdin.write(b"stop\n")
            p.stdin.flush()
            sent.append(int(p.stdout.readline()))
            p.wait(20)
        for sid, nums in per_sub(receiver).items():
            assert nums == list(range(1, 121)), sid  # each once, in order
        assert sorted(_sid(b) for b in receiver.bundles("handshake")) == \
            sorted(s["id"] for s in subs)
        assert sum(sent) == 6 * 120  # no process sent a notification the other one did
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        events.start()


async def _stream_seqs(url: str, stream: str, subject: str) -> list[tuple[str, int]]:
    """(subject, event seq) of every message of ``subject`` in the stream, in stream order."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
        info = await js.stream_info(stream, subjects_filter=subject)
        want = sum((info.state.subjects or {}).values())
        out = []
        while len(out) < want:
            m = await sub.next_msg(timeout=5)
            out.append((m.subject, orjson.loads(m.data)["seq"]))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def _wait_stream(url, stream, subject, n, timeout=20.0):
    deadline = time.time() + timeout
    got = []
    while time.time() < deadline:
        try:
            got = asyncio.run(_stream_seqs(url, stream, subject))
        except Exception:  # noqa: BLE001 - the stream is not created yet
            got = []
        if len(got) >= n:
            return got
        time.sleep(0.2)
    return got


def test_nats_bridge_publishes_each_event_once(db, fkj_app, ev_client, events, nats_url,
                                               monkeypatch):
    from fkj.app import build_fkj
    from fkj.config import Settings
    from fkj.events.delivery import EventConfig
    from fkj.events.nats_bridge import NatsBridge
    from fkj.events.tables import event_outbox
    from fkj.events.wiring import register_events
    from fkj.store.backend import scope

    c = ev_client
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"FKJTEST_{tag}", f"fkjtest{tag}"
    subject = f"{prefix}.{c.tenant}.>"
    for i in range(20):
        post(c, {"resourceType": "Patient", "name": [{"family": f"N{i}"}]})
    p = post(c, {"resourceType": "Patient", "name": [{"family": "Obs"}]})
    for i in range(9):
        post(c, {"resourceType": "Observation", "status": "final", "code": {"text": f"o{i}"},
                 "subject": {"reference": f"Patient/{p['id']}"}})
    # a second server process's view: configured through the environment only
    monkeypatch.setenv("FKJ_NATS_URL", nats_url)
    monkeypatch.setenv("FKJ_NATS_STREAM", stream)
    monkeypatch.setenv("FKJ_NATS_SUBJECT_PREFIX", prefix)
    other = build_fkj(Settings(database_url=db.url, base_url="http://testserver"),
                      engine=db.engine)
    register_events(other, EventConfig(start=False))
    bridges = [other.services.extras["events_nats"],
               NatsBridge(fkj_app.services, EventConfig(poll=0.05))]  # two publishers
    for b in bridges:
        b.config.poll = 0.05
        b.start()
    try:
        time.sleep(0.3)
        for i in range(5):  # more while the bridges run: woken by the commit hook or polled
            r = post(c, {"resourceType": "Patient", "name": [{"family": f"M{i}"}]})
        got = _wait_stream(nats_url, stream, subject, 35)
        assert [seq for _, seq in got] == list(range(1, 36))
        types = {seq: s.rsplit(".", 1)[1] for s, seq in got}
        assert [types[s] for s in range(22, 31)] == ["Observation"] * 9
        assert all(s.startswith(f"{prefix}.{c.tenant}.") for s, _ in got)
        assert r["id"]

        # a publisher that died after JetStream's acks and before its cursor commit: the
        # events are published again and JetStream drops them as duplicates (Nats-Msg-Id)
        for b in bridges:
            b.stop()
        with scope(db.engine, c.tenant, write=True) as conn:
            conn.execute(update(event_outbox).where(event_outbox.c.tenant == c.tenant)
                         .values(seq=25))
        post(c, {"resourceType": "Patient", "name": [{"family": "Sist"}]})
        bridges = [NatsBridge(fkj_app.services, EventConfig(poll=0.05, nats_url=nats_url,
                                                            nats_stream=stream,
                                                            nats_subject_prefix=prefix))]
        bridges[0].start()
        got = _wait_stream(nats_url, stream, subject, 36)
        time.sleep(0.5)
        got = asyncio.run(_stream_seqs(nats_url, stream, subject))
        assert [seq for _, seq in got] == list(range(1, 37))
    finally:
        for b in bridges:
            b.stop()
