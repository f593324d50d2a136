"""NATS JetStream bridge: every committed event is published once to
``{prefix}.{tenant}.{resourceType}`` on a durable stream (default ``FKJ_EVENTS``,
subjects ``fkj.>``), for consumers outside the platform.

An outbox cursor per tenant (``event_outbox``, name ``nats``) records the last published
sequence number. A publisher claims the cursor row (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), publishes the events after it in order, waits for JetStream's acks and then
advances the cursor in the same transaction. Each message carries ``Nats-Msg-Id =
{stream}:{tenant}:{seq}``, so a publish repeated after a crash between the ack and the commit
is dropped by JetStream's duplicate window: exactly once per event.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import orjson
from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from fkj.events.tables import event_outbox as O
from fkj.store.backend import ALL_TENANTS, scope
from fkj.store.schema import event_log
from fkj.store.schema import tenant as tenant_table

log = logging.getLogger("fkj.events.nats")
NAME = "nats"
#: JetStream drops a message whose Nats-Msg-Id it saw within this window (seconds): a
#: publish repeated after a crash between the ack and the cursor commit
DUPLICATE_WINDOW_S = 600.0


class NatsBridge:
    def __init__(self, services, config):
        self.services = services
        self.engine = services.engine
        self.config = config
        self.pg = self.engine.dialect.name == "postgresql"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0

    def wake(self, *_a) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                            name="fkj-nats", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    async def _main(self) -> None:
        import nats

        while not self._stop.is_set():
            try:
                nc = await nats.connect(self.config.nats_url, connect_timeout=5,
                                        max_reconnect_attempts=-1)
                try:
                    js = nc.jetstream()
                    await self.ensure_stream(js)
                    while not self._stop.is_set():
                        self._wake.clear()
                        n = await self.publish_pending(js)
                        if not n:
                            await asyncio.get_running_loop().run_in_executor(
                                None, self._wake.wait, self.config.poll)
                finally:
                    await nc.close()
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("NATS bridge failed; retrying")
                await asyncio.sleep(1)

    async def ensure_stream(self, js) -> None:
        from nats.js.errors import NotFoundError
        try:
            await js.stream_info(self.config.nats_stream)
        except NotFoundError:
            await js.add_stream(name=self.config.nats_stream,
                                subjects=[f"{self.config.nats_subject_prefix}.>"],
                                duplicate_window=DUPLICATE_WINDOW_S)

    async def publish_pending(self, js) -> int:
        t = tenant_table
        with scope(self.engine, ALL_TENANTS) as conn:
            tenants = [r.id for r in conn.execute(
                select(t.c.id).select_from(t.outerjoin(O, (O.c.tenant == t.c.id)
                                                       & (O.c.name == NAME)))
                .where(t.c.event_seq > 0, or_(O.c.seq.is_(None), O.c.seq < t.c.event_seq)))]
        total = 0
        for tenant in tenants:
            total += await self.publish_tenant(js, tenant)
        return total

    async def _publish(self, js, events) -> None:
        for ev in events:
            payload = orjson.dumps({
                "tenant": ev.tenant, "seq": ev.seq, "resourceType": ev.type, "id": ev.id,
                "version": ev.version, "action": ev.action, "time": ev.time, "actor": ev.actor})
            subject = f"{self.config.nats_subject_prefix}.{ev.tenant}.{ev.type}"
            # one at a time, each acknowledged: the stream keeps the event order
            await js.publish(subject, payload, stream=self.config.nats_stream,
                             headers={"Nats-Msg-Id": msg_id(self.config.nats_stream,
                                                            ev.tenant, ev.seq)})
        self.published += len(events)

    async def publish_tenant(self, js, tenant: str, batch: int = 500) -> int:
        """Publish the tenant's events after its outbox cursor; returns how many."""
        if self.pg:
            # the cursor row stays locked while publishing: one publisher per tenant at a time
            with scope(self.engine, tenant, write=True) as conn:
                seq = conn.execute(select(O.c.seq).where(O.c.tenant == tenant, O.c.name == NAME)
                                   .with_for_update(skip_locked=True)).scalar()
                if seq is None:
                    if conn.execute(select(O.c.seq).where(
                            O.c.tenant == tenant, O.c.name == NAME)).first() is not None:
                        return 0  # another publisher has it
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(O).values(tenant=tenant, name=NAME, seq=0))
                    except IntegrityError:
                        return 0
                    seq = 0
                events = self._events(conn, tenant, seq, batch)
                if events:
                    await self._publish(js, events)
                    conn.execute(update(O).where(O.c.tenant == tenant, O.c.name == NAME)
                                 .values(seq=events[-1].seq))
                return len(events)
        # SQLite (one process): no write lock is held while publishing
        lock = _process_lock(self.engine)
        if not lock.acquire(blocking=False):
            return 0
        try:
            with scope(self.engine, tenant) as conn:
                seq = conn.execute(select(O.c.seq).where(
                    O.c.tenant == tenant, O.c.name == NAME)).scalar()
                events = self._events(conn, tenant, seq or 0, batch)
            if not events:
                return 0
            await self._publish(js, events)
            with scope(self.engine, tenant, write=True) as conn:
                if seq is None:
                    conn.execute(insert(O).values(tenant=tenant, name=NAME, seq=events[-1].seq))
                else:
                    conn.execute(update(O).where(O.c.tenant == tenant, O.c.name == NAME)
                                 .values(seq=events[-1].seq))
            return len(events)
        finally:
            lock.release()

    @staticmethod
    def _events(conn, tenant: str, after: int, batch: int) -> list:
        return conn.execute(select(event_log).where(
            event_log.c.tenant == tenant, event_log.c.seq > after)
            .order_by(event_log.c.seq).limit(batch)).all()


def msg_id(stream: str, tenant: str, seq: int) -> str:
    return f"{stream}:{tenant}:{seq}"


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _process_lock(engine) -> threading.Lock:
    key = str(engine.url)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())
