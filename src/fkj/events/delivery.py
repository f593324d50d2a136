"""Matching and delivery: turns the event log into notifications.

One *dispatcher* thread per process runs rounds, tenant by tenant. A round is one short write
transaction that

1. claims the tenant's subscriptions with work (``SELECT … FOR UPDATE SKIP LOCKED`` on
   PostgreSQL, so a subscription is handled by one process at a time);
2. *matches* the events after each subscription's cursor (``matched_seq``) against its topic
   and filter criteria — on behalf of the owner, so the access policy's search restrictions
   apply — and records every match as a numbered ``subscription_event`` (1, 2, 3 …);
3. *leases* the deliveries that are due (handshake, the next notifications after
   ``delivered`` — at most ``max_count`` per Bundle —, heartbeat): ``lease_owner`` and
   ``lease_until`` on the subscription row. One lease per subscription, so its notifications
   go out one Bundle at a time, in event-number order.

The dispatcher then POSTs the Bundles asynchronously (its own asyncio loop, keep-alive
connections; full-resource payloads are read and audited in a small thread pool) without
holding any database lock, and commits their outcomes in batches, one statement per tenant,
only where it still holds the lease: a 2xx advances
``delivered``; a failure counts, backs off exponentially (capped), and after
``max_failures`` failures in a row the status becomes ``error``. Retries go on, and the first
success makes it ``active`` again — nothing is skipped. A process that dies mid-delivery
leaves a lease that expires (timeout + margin); another process then sends the same
notifications again: delivery is at-least-once.

Websocket subscriptions are matched here and delivered by the socket's own loop
(:mod:`fkj.events.websocket`) through :meth:`DeliveryWorker.deliver_ws`, with the same lease.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace

import orjson
from sqlalchemy import (
    BigInteger,
    and_,
    bindparam,
    case,
    cast,
    insert,
    or_,
    select,
    text,
    update,
)

from fkj.errors import FhirError
from fkj.events.http import AsyncHttp
from fkj.events.subscriptions import EVENTS_SUBJECT, notification_bundle, principal_from_json
from fkj.events.tables import subscription_event as E
from fkj.events.tables import subscription_state as S
from fkj.events.topics import TOPICS

# "Patient/x" of a resource: the platform's one answer (the policy's and the audit's)
from fkj.repository.patients import patient_refs as patients_of
from fkj.store.backend import ALL_TENANTS, now_us, scope
from fkj.store.schema import event_log, resource_version
from fkj.store.schema import tenant as tenant_table

log = logging.getLogger("fkj.events")
LIVE = ("requested", "active", "error")
US = 1_000_000
#: finished deliveries are recorded at the latest this long (s) after the first of them …
FLUSH_DELAY = 0.02
#: … or when this many are waiting
FLUSH_BATCH = 200
#: PostgreSQL array types of the columns written in bulk
_PG_TYPES = {"id": "text", "lease_owner": "text", "status": "text", "last_error": "text",
             "matched_seq": "bigint", "event_count": "bigint", "lease_until": "bigint",
             "updated": "bigint", "delivered": "bigint", "failures": "integer",
             "next_attempt": "bigint", "last_sent": "bigint", "sub_id": "text",
             "number": "bigint", "seq": "bigint", "type": "text", "rid": "text",
             "version": "integer", "action": "text", "time": "bigint"}


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _env(name: str, default, conv=float):
    """A dataclass field read from the environment when the config is made."""
    return field(default_factory=lambda: conv(_env_float(name, default)))


def _env_str(name: str, default: str | None):
    return field(default_factory=lambda: os.environ.get(name) or default)


def _env_flag(name: str):
    """None when unset (the default applies), else whether it is ``1``/``true``/``yes``."""
    def read():
        v = os.environ.get(name)
        return None if v is None or v == "" else v.strip().lower() in ("1", "true", "yes")
    return field(default_factory=read)


@dataclass
class EventConfig:
    """Settings of the event side; each default comes from an ``FKJ_…`` variable."""

    #: threads that read and audit full-resource payloads (the POSTs themselves are
    #: asynchronous, on the dispatcher's event loop)
    threads: int = _env("FKJ_EVENTS_THREADS", 4, int)
    #: concurrent connections per endpoint host and port
    connections: int = _env("FKJ_EVENTS_CONNECTIONS", 32, int)
    #: seconds between polls when nothing woke the dispatcher (other processes' writes,
    #: retries that became due, heartbeats)
    poll: float = _env("FKJ_EVENTS_POLL", 0.5)
    #: failures in a row after which a subscription's status becomes ``error``
    max_failures: int = _env("FKJ_EVENTS_MAX_FAILURES", 5, int)
    #: first retry delay and its cap (seconds); doubled on every failure
    retry_base: float = _env("FKJ_EVENTS_RETRY_BASE", 0.5)
    retry_max: float = _env("FKJ_EVENTS_RETRY_MAX", 60.0)
    #: default rest-hook timeout (seconds; Subscription backport-timeout overrides) and max
    #: notifications per Bundle (backport-max-count overrides)
    timeout: float = _env("FKJ_EVENTS_TIMEOUT", 10.0)
    max_count: int = _env("FKJ_EVENTS_MAX_COUNT", 100, int)
    #: a lease lasts the timeout plus this margin (seconds) before another process may retry
    lease_margin: float = _env("FKJ_EVENTS_LEASE_MARGIN", 5.0)
    #: events examined per matching round
    match_batch: int = 1000
    #: start the background threads in register_events (``FKJ_EVENTS_WORKERS=0``: off)
    start: bool = field(default_factory=lambda: os.environ.get("FKJ_EVENTS_WORKERS", "1") != "0")
    #: rest-hook endpoints (see fkj.events.endpoints): plain http allowed (None: only in
    #: demo/dev, ``FKJ_DEMO=1``), non-global addresses (loopback, private, link-local …)
    #: allowed, and host names / CIDR blocks always allowed (comma-separated)
    allow_http: bool | None = _env_flag("FKJ_EVENTS_ALLOW_HTTP")
    allow_private: bool = field(default_factory=lambda: bool(
        os.environ.get("FKJ_EVENTS_ALLOW_PRIVATE", "").strip().lower() in ("1", "true", "yes")))
    allowed_networks: str = _env_str("FKJ_EVENTS_ALLOWED_NETWORKS", "")
    #: NATS JetStream bridge: server URL (unset: no bridge), stream, subject prefix
    nats_url: str | None = _env_str("FKJ_NATS_URL", None)
    nats_stream: str = _env_str("FKJ_NATS_STREAM", "FKJ_EVENTS")
    nats_subject_prefix: str = _env_str("FKJ_NATS_SUBJECT_PREFIX", "fkj")


def _heartbeat_due(now: int):
    return and_(S.c.heartbeat > 0, S.c.last_sent + cast(S.c.heartbeat, BigInteger) * US <= now)


def _deliverable(now: int):
    """SQL: a rest-hook delivery (handshake, notifications, heartbeat) is due and not leased."""
    return and_(S.c.channel == "rest-hook", S.c.lease_until < now, S.c.next_attempt <= now,
                or_(S.c.status == "requested", S.c.last_sent == 0,
                    S.c.delivered < S.c.event_count, _heartbeat_due(now)))


class DeliveryWorker:
    def __init__(self, services, base_url: str, config: EventConfig | None = None):
        self.services = services
        self.engine = services.engine
        self.base_url = base_url.rstrip("/")
        self.config = config or EventConfig()
        self.pg = self.engine.dialect.name == "postgresql"
        #: who holds a lease (unique per worker instance)
        self.id = f"{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leases = itertools.count(1)
        self._cond = threading.Condition()
        self._generation = 0
        #: bumped after every round that recorded matches (websocket loops watch it)
        self.matched_generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake_ev: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._status_pool: ThreadPoolExecutor | None = None
        self._jobs: list[SimpleNamespace] = []
        self._dirty = False
        self._inflight = 0
        self._first_result = 0.0
        #: tenants with a subscription that matched while its delivery was in flight
        self._recheck: set[str] = set()
        self._results: list[SimpleNamespace] = []
        self._results_lock = threading.Lock()
        #: notifications delivered (2xx) by this process
        self.sent = 0
        self._endpoint_policy: tuple[tuple, object] | None = None

    def endpoint_policy(self):
        """The rest-hook endpoint policy of the current settings (see
        :mod:`fkj.events.endpoints`), rebuilt when they change."""
        from fkj.events.endpoints import EndpointPolicy
        c = self.config
        settings = self.services.settings
        allow_http = settings.demo if c.allow_http is None else c.allow_http
        key = (allow_http, c.allow_private, c.allowed_networks or "", self.base_url)
        held = self._endpoint_policy
        if held is None or held[0] != key:
            policy = EndpointPolicy.from_settings(
                allow_http=allow_http, allow_private=c.allow_private,
                allowed=c.allowed_networks or "", base_url=settings.base_url)
            held = self._endpoint_policy = (key, policy)
        return held[1]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(max(1, self.config.threads), "fkj-events-payload")
        self._status_pool = ThreadPoolExecutor(1, "fkj-events-status")
        started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(started)),
                                        name="fkj-events", daemon=True)
        self._thread.start()
        started.wait(10)

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for pool in (self._pool, self._status_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._status_pool = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def wake(self, *_args) -> None:
        """Something was committed (the after-commit hook): look for work at once."""
        self._dirty = True
        self._poke()

    def _poke(self) -> None:
        loop, ev = self._loop, self._wake_ev
        if loop is None or ev is None:
            return
        if threading.get_ident() == self._loop_thread:
            ev.set()
            return
        try:
            loop.call_soon_threadsafe(ev.set)
        except RuntimeError:  # the loop is closed (stopping)
            pass

    async def _main(self, started: threading.Event) -> None:
        """The dispatcher: rounds (blocking, short database transactions) alternate with the
        asynchronous POSTs, all on this one thread — no lock convoys between threads.

        A commit (``wake``) or the poll interval makes it look at every tenant; finished
        deliveries are recorded together once none is in flight any more, ``FLUSH_DELAY``
        after the first one, or when many are waiting; then only the tenants whose
        subscriptions still have notifications waiting get another round."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake_ev = asyncio.Event()
        http = AsyncHttp(self.config.connections, self.endpoint_policy)
        tasks: set[asyncio.Task] = set()
        failures = 0
        last_scan = 0.0
        started.set()
        try:
            while not self._stop.is_set():
                self._wake_ev.clear()
                try:
                    recheck: set[str] = set()
                    if self._flush_due():
                        recheck = self.flush_results()
                    if self._dirty or time.monotonic() - last_scan >= self.config.poll:
                        self._dirty = False
                        last_scan = time.monotonic()
                        more = self.run_once()
                    else:
                        more = False
                        for tenant in recheck:
                            more = self.round(tenant) or more
                    if more:
                        self._dirty = True  # more events than one round takes: go on
                    for job in self._take_jobs():
                        self._inflight += 1
                        t = asyncio.create_task(self._send_async(job, http))
                        tasks.add(t)
                        t.add_done_callback(tasks.discard)
                except Exception as e:  # the dispatcher never dies
                    failures += 1
                    if failures == 1:
                        log.exception("event delivery round failed")
                    else:  # the same trouble again (database down …): one line, slower
                        log.warning("event delivery round failed (%d in a row): %s",
                                    failures, str(e).splitlines()[0] if str(e) else e)
                    await asyncio.sleep(self.config.poll * min(failures, 10))
                    continue
                failures = 0
                if self._dirty:
                    await asyncio.sleep(0)  # let the POSTs progress
                    continue
                timeout = self.config.poll - (time.monotonic() - last_scan)
                if self._results:
                    timeout = min(timeout, FLUSH_DELAY - (time.monotonic() - self._first_result))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_ev.wait(), max(timeout, 0.001))
            if tasks:  # let the deliveries in flight finish and record them
                await asyncio.wait(tasks, timeout=self.config.timeout + 1)
            try:
                self.flush_results()
            except Exception:  # the leases expire; another process retries
                log.exception("event delivery: outcomes not recorded at stop")
        finally:
            await http.close()
            self._loop = self._wake_ev = None

    def _flush_due(self) -> bool:
        with self._results_lock:
            n = len(self._results)
        return bool(n) and (self._inflight == 0 or n >= FLUSH_BATCH
                            or time.monotonic() - self._first_result >= FLUSH_DELAY)

    def _take_jobs(self) -> list:
        jobs, self._jobs = self._jobs, []
        return jobs

    def deliver_now(self) -> None:
        """Run rounds and deliver in the calling thread until nothing is due (when the
        background dispatcher is not started: tests, CLI)."""
        async def go():
            http = AsyncHttp(self.config.connections, self.endpoint_policy)
            try:
                for _ in range(1000):
                    self.flush_results()
                    more = self.run_once()
                    jobs = self._take_jobs()
                    if jobs:
                        self._inflight += len(jobs)
                        await asyncio.gather(*(self._send_async(j, http) for j in jobs))
                    elif not more and not self._results:
                        return
            finally:
                await http.close()
        asyncio.run(go())

    # ------------------------------------------------------------------ rounds
    def candidate_tenants(self) -> list[str]:
        now = now_us()
        t = tenant_table
        q = (select(S.c.tenant).distinct().select_from(S.join(t, t.c.id == S.c.tenant))
             .where(S.c.status.in_(LIVE),
                    or_(S.c.matched_seq < t.c.event_seq, _deliverable(now),
                        and_(S.c.end_time.is_not(None), S.c.end_time < now))))
        with scope(self.engine, ALL_TENANTS) as conn:
            return [r[0] for r in conn.execute(q)]

    def run_once(self) -> bool:
        """One round per tenant with work; True if a round left events unmatched (more than
        ``match_batch``)."""
        more = False
        for tenant in self.candidate_tenants():
            if self._stop.is_set():
                break
            more = self.round(tenant) or more
        return more

    def round(self, tenant: str, *, send: bool = True) -> bool:
        """Match and lease for one tenant; True if events are left for another round."""
        now = now_us()
        jobs: list[SimpleNamespace] = []
        changes: list[tuple[str, str, str]] = []
        with scope(self.engine, tenant, write=True) as conn:
            event_seq = conn.execute(select(tenant_table.c.event_seq).where(
                tenant_table.c.id == tenant)).scalar()
            if event_seq is None:
                return False
            q = (select(S).where(S.c.tenant == tenant, S.c.status.in_(LIVE),
                                 or_(S.c.matched_seq < event_seq, _deliverable(now),
                                     and_(S.c.end_time.is_not(None), S.c.end_time < now)))
                 .order_by(S.c.id))
            if self.pg:
                q = q.with_for_update(skip_locked=True)
            rows = [_ns(r) for r in conn.execute(q)]
            if not rows:
                return False
            for r in rows:
                r.count_before, r.new_events = r.event_count, []
                if r.end_time and r.end_time < now:
                    r.status = "off"
                    changes.append((tenant, r.id, "off"))
            live = [r for r in rows if r.status in LIVE]
            matched = self.match_many(conn, tenant, [r for r in live if r.matched_seq < event_seq],
                                      event_seq)
            more = any(r.matched_seq < event_seq for r in live)
            if any(r.new_events and r.lease_until >= now for r in live):
                self._recheck.add(tenant)  # delivered once the lease in flight is recorded
            if send:
                for r in live:
                    kind = self._due_kind(r, now)
                    if kind is None:
                        continue
                    r.lease_owner = f"{self.id}:{next(self._leases)}"
                    r.lease_until = now + int(((r.timeout or self.config.timeout)
                                               + self.config.lease_margin) * US)
                    jobs.append(SimpleNamespace(row=r, kind=kind, events=[]))
                # caught-up subscriptions get what was just matched; others read their backlog
                backlog = [j.row for j in jobs if j.kind == "event-notification"
                           and j.row.delivered < j.row.count_before]
                pending = self._pending(conn, tenant, backlog)
                for j in jobs:
                    if j.kind != "event-notification":
                        continue
                    r = j.row
                    if r.delivered < r.count_before:
                        j.events = pending.get(r.id, [])
                    else:
                        j.events = r.new_events[:r.max_count or self.config.max_count]
            self._update_rows(conn, tenant, [
                {"id": r.id, "matched_seq": r.matched_seq, "event_count": r.event_count,
                 "lease_owner": r.lease_owner, "lease_until": r.lease_until,
                 "status": r.status, "updated": now} for r in rows])
        if matched:
            self.matched_generation += 1
        self._jobs.extend(jobs)
        self._status_changed(changes)
        return more

    def _due_kind(self, r, now: int) -> str | None:
        if r.channel != "rest-hook" or r.lease_until >= now or r.next_attempt > now:
            return None
        if r.status == "requested" or r.last_sent == 0:
            return "handshake"
        if r.delivered < r.event_count:
            return "event-notification"
        if r.heartbeat and r.last_sent + r.heartbeat * US <= now:
            return "heartbeat"
        return None

    def _pending(self, conn, tenant: str, rows: list) -> dict[str, list]:
        """The next notifications (at most max_count) of each subscription, in order."""
        out: dict[str, list] = {}
        if not rows:
            return out
        limit = case((S.c.max_count > 0, S.c.max_count), else_=self.config.max_count)
        ids = [r.id for r in rows]
        for i in range(0, len(ids), 500):
            q = (select(E).join(S, and_(S.c.tenant == E.c.tenant, S.c.id == E.c.sub_id))
                 .where(E.c.tenant == tenant, E.c.sub_id.in_(ids[i:i + 500]),
                        E.c.number > S.c.delivered, E.c.number <= S.c.delivered + limit)
                 .order_by(E.c.sub_id, E.c.number))
            for ev in conn.execute(q):
                out.setdefault(ev.sub_id, []).append(ev)
        return out

    def _update_rows(self, conn, tenant: str, rows: list[dict], *,
                     match_lease: bool = False) -> None:
        """Update several subscription rows (each dict: ``id``, optionally ``lease`` to
        match, and the columns to set) in one statement on PostgreSQL."""
        if not rows:
            return
        cols = [k for k in rows[0] if k not in ("id", "lease")]
        if not self.pg:
            stmt = update(S).where(S.c.tenant == tenant, S.c.id == bindparam("b_id"))
            if match_lease:
                stmt = stmt.where(S.c.lease_owner == bindparam("b_lease"))
            conn.execute(stmt.values({c: bindparam(f"b_{c}") for c in cols}),
                         [{f"b_{k}": v for k, v in r.items()} for r in rows])
            return
        # PostgreSQL: one UPDATE … FROM unnest(arrays) — a fixed statement, one round trip
        keys = ["id", *(["lease"] if match_lease else []), *cols]
        names = {"id": "id", "lease": "lease_owner"}
        sql = (f"UPDATE {S.name} AS s SET "
               + ", ".join(f"{c} = v.{c}" for c in cols)
               + " FROM unnest(" + ", ".join(
                   f"CAST(:p_{k} AS {_PG_TYPES[names.get(k, k)]}[])" for k in keys)
               + ") AS v(" + ", ".join(keys) + ") WHERE s.tenant = :tenant AND s.id = v.id"
               + (" AND s.lease_owner = v.lease" if match_lease else ""))
        params = {f"p_{k}": [r[k] for r in rows] for k in keys}
        conn.execute(text(sql), {"tenant": tenant, **params})

    # ------------------------------------------------------------------ matching
    def match_many(self, conn, tenant: str, rows: list, event_seq: int) -> int:
        """Record the events after each row's ``matched_seq`` that are notifications of its
        subscription (numbered on from ``event_count``); advances the rows in memory (the
        caller writes them). Returns how many matched."""
        if not rows:
            return 0
        lo = min(r.matched_seq for r in rows)
        events = conn.execute(select(event_log).where(
            event_log.c.tenant == tenant, event_log.c.seq > lo, event_log.c.seq <= event_seq)
            .order_by(event_log.c.seq).limit(self.config.match_batch)).all()
        last = event_seq if len(events) < self.config.match_batch else events[-1].seq
        seqs = [e.seq for e in events]
        cache: dict = {}
        values = []
        for r in rows:
            if r.matched_seq >= last:
                continue
            evs = events[bisect.bisect_right(seqs, r.matched_seq):]
            topic = TOPICS.get(r.topic)
            for ev in self.matching_events(conn, r, topic, evs, cache) if topic and evs else ():
                r.event_count += 1
                v = {"tenant": tenant, "sub_id": r.id, "number": r.event_count, "seq": ev.seq,
                     "type": ev.type, "rid": ev.id, "version": ev.version,
                     "action": ev.action, "time": ev.time}
                values.append(v)
                if hasattr(r, "new_events"):
                    r.new_events.append(SimpleNamespace(**v))
            r.matched_seq = last
        if values and self.pg:  # one INSERT … SELECT FROM unnest(arrays)
            cols = [c for c in values[0] if c != "tenant"]
            conn.execute(text(
                f"INSERT INTO {E.name} (tenant, {', '.join(cols)}) SELECT :tenant, * FROM "
                "unnest(" + ", ".join(f"CAST(:p_{c} AS {_PG_TYPES[c]}[])" for c in cols)
                + ")"), {"tenant": tenant, **{f"p_{c}": [v[c] for v in values] for c in cols}})
        elif values:
            conn.execute(insert(E), values)
        return len(values)

    def matching_events(self, conn, row, topic, events, cache: dict | None = None) -> list:
        from fkj.repository.repository import Repository
        from fkj.search.engine import match_ids

        cache = {} if cache is None else cache
        filters = orjson.loads(row.filters)
        cand = [e for e in events if topic.covers(e.type, e.action)
                and not (e.type == "Subscription" and e.actor == EVENTS_SUBJECT)]
        if topic.types is None:
            types = {f[0] for f in filters}
            cand = [e for e in cand if e.type in types]
        if topic.needs_content:
            cand = [e for e in cand if self._trigger(conn, topic, e, cache)]
        if not cand:
            return []
        owner_key = row.owner
        owner = None

        def repo():
            nonlocal owner
            if owner is None:
                owner = Repository(self.services, principal_from_json(row.owner), row.tenant)
            return owner

        keep: set[int] = set()
        by_type: dict[str, list] = {}
        for e in cand:
            by_type.setdefault(e.type, []).append(e)
        for rtype, evs in by_type.items():
            akey = ("authorize", owner_key, rtype)
            if akey not in cache:
                try:
                    repo().authorize("search-type", rtype)
                    cache[akey] = True
                except FhirError:
                    cache[akey] = False
            if not cache[akey]:
                continue
            applicable = [f[1] for f in filters if f[0] in (rtype, None)] or [[]]
            # a deletion cannot be searched any more: it matches filters without parameters,
            # if the owner could see the resource as it was
            if any(not p for p in applicable):
                for e in evs:
                    if e.action == "delete":
                        content = self._content(conn, e, e.version, cache) or \
                            self._content(conn, e, e.version - 1, cache)
                        if content is not None and repo().visible("read", content):
                            keep.add(e.seq)
            live = [e for e in evs if e.action != "delete"]
            if not live:
                continue
            ids = tuple(sorted({e.id for e in live}))
            ok: set[str] = set()
            for params in applicable:
                key = ("match", owner_key, rtype, tuple(tuple(p) for p in params), ids)
                if key not in cache:
                    found: set[str] = set()
                    if not params and not self.services.hooks.search_filters:
                        found.update(ids)  # no criteria and no policy restriction: all match
                    else:
                        for i in range(0, len(ids), 200):
                            part = ids[i:i + 200]
                            try:
                                found.update(match_ids(
                                    repo(), conn, rtype,
                                    [tuple(p) for p in params] + [("_id", ",".join(part))],
                                    limit=len(part)))
                            except FhirError as err:
                                log.warning("subscription %s/%s: filter %s failed: %s",
                                            row.tenant, row.id, params, err.diagnostics)
                    cache[key] = found
                ok |= cache[key]
            keep.update(e.seq for e in live if e.id in ok)
        return [e for e in events if e.seq in keep]

    def _content(self, conn, ev, version: int, cache: dict) -> dict | None:
        key = ("content", ev.type, ev.id, version)
        if key not in cache:
            r = None
            if version >= 1:
                r = conn.execute(select(resource_version.c.content).where(
                    resource_version.c.tenant == ev.tenant, resource_version.c.type == ev.type,
                    resource_version.c.id == ev.id, resource_version.c.version == version)).first()
            try:
                content = orjson.loads(r.content) if r is not None and r.content else None
            except orjson.JSONDecodeError:
                content = None
            cache[key] = content if isinstance(content, dict) and content else None
        return cache[key]

    def _trigger(self, conn, topic, ev, cache: dict) -> bool:
        if ev.action == "delete":
            old = self._content(conn, ev, ev.version, cache) or \
                self._content(conn, ev, ev.version - 1, cache)
            return topic.trigger("delete", None, old)
        new = self._content(conn, ev, ev.version, cache)
        old = self._content(conn, ev, ev.version - 1, cache) if ev.action == "update" else None
        return topic.trigger(ev.action, new, old)

    # ------------------------------------------------------------------ sending
    def payload_resources(self, row, events, principal=None) -> dict:
        """Resource JSON for a full-resource payload: each focus read through the Repository
        on behalf of the receiver (``principal``, who bound a websocket; by default the
        owner, whose endpoint a rest-hook posts to), so the access policy decides, and
        audited as a read by the receiver. What the receiver may not read is left out (the
        notification stays id-only for it)."""
        from fkj.repository.repository import Repository
        from fkj.security.audit import record_access

        if row.content != "full-resource" or not events:
            return {}
        principal = principal or principal_from_json(row.owner)
        repo = Repository(self.services, principal, row.tenant)
        out = {}
        for ev in events:
            if ev.action == "delete":
                continue
            try:
                out[(ev.type, ev.rid, ev.version)] = repo.vread(ev.type, ev.rid,
                                                                str(ev.version)).content
            except FhirError:
                pass
        if out:
            patients: list[str] = []
            for text in out.values():
                for p in patients_of(orjson.loads(text)):
                    if p not in patients:
                        patients.append(p)
            # raises (AuditUnavailable) when the read cannot be audited: nothing is sent
            record_access(self.services, row.tenant, principal, subtype="read",
                          resources=[f"{t}/{i}/_history/{v}" for (t, i, v) in out],
                          patients=patients,
                          description=f"Subscription/{row.id} full-resource notification")
        return out

    def _bundle(self, row, kind: str, events: list, principal=None) -> bytes:
        status = "active" if kind == "handshake" else row.status
        shown = SimpleNamespace(**{**vars(row), "status": status,
                                   "event_count": max(row.event_count,
                                                      events[-1].number if events else 0)})
        resources = self.payload_resources(row, events, principal) if events else {}
        return orjson.dumps(notification_bundle(self.base_url, row.tenant, shown, kind, events,
                                                resources))

    async def _send_async(self, job, http: AsyncHttp) -> None:
        row = job.row
        try:
            if row.content == "full-resource" and job.events:
                # reads and audit records block: off the event loop
                body = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self._bundle, row, job.kind, job.events)
            else:
                body = self._bundle(row, job.kind, job.events)
            error = await http.post(row.endpoint, self._headers(row), body,
                                    float(row.timeout or self.config.timeout))
        except Exception as e:  # noqa: BLE001 - e.g. the audit log is unavailable
            error = f"{type(e).__name__}: {e}"
        with self._results_lock:
            if not self._results:
                self._first_result = time.monotonic()
            self._results.append(SimpleNamespace(row=row, kind=job.kind, events=job.events,
                                                 error=error, at=now_us()))
        self._inflight = max(0, self._inflight - 1)
        if self._flush_due():
            self._poke()

    def _headers(self, row) -> list[tuple[str, str]]:
        """The request headers: the platform's, then the subscriber's (opened from their
        sealed form; :class:`fkj.events.secrets.HeaderSecretError` fails the delivery)."""
        from fkj.events.secrets import box_of
        headers = [("Content-Type", "application/fhir+json"),
                   ("Accept", "application/fhir+json"), ("User-Agent", "fkj-events")]
        for h in box_of(self.services).open(row.tenant, row.id, row.headers):
            name, _, value = h.partition(":")
            if name.strip() and name.strip().lower() not in (
                    "content-type", "content-length", "host", "transfer-encoding",
                    "connection"):
                headers.append((name.strip(), value.strip()))
        return headers

    def flush_results(self) -> set[str]:
        """Record the outcomes of finished deliveries (batched, one transaction per tenant);
        returns the tenants with notifications still waiting."""
        with self._results_lock:
            results, self._results = self._results, []
        recheck, self._recheck = self._recheck, set()
        if not results:
            self._recheck = recheck
            return set()
        by_tenant: dict[str, list] = {}
        for r in results:
            by_tenant.setdefault(r.row.tenant, []).append(r)
        changes = []
        for tenant, items in by_tenant.items():
            params = []
            now = now_us()
            for res in items:
                row = res.row
                if res.error is None:
                    delivered = res.events[-1].number if res.events else row.delivered
                    p = {"delivered": delivered, "failures": 0, "next_attempt": 0,
                         "last_sent": res.at, "last_error": None, "status": "active"}
                    self.sent += len(res.events)
                    if delivered < row.event_count or row.status == "requested":
                        recheck.add(tenant)
                else:
                    failures = row.failures + 1
                    delay = min(self.config.retry_base * 2 ** min(failures - 1, 30),
                                self.config.retry_max)
                    p = {"delivered": row.delivered, "failures": failures,
                         "next_attempt": now + int(delay * US), "last_sent": row.last_sent,
                         "last_error": res.error[:2000],
                         "status": "error" if failures >= self.config.max_failures
                         else row.status}
                    log.info("subscription %s/%s: %s failed (%d): %s", tenant, row.id,
                             res.kind, failures, res.error)
                p.update(id=row.id, lease=row.lease_owner, lease_owner=None, lease_until=0,
                         updated=now)
                params.append(p)
                if p["status"] != row.status:
                    changes.append((tenant, row.id, p["status"]))
            with scope(self.engine, tenant, write=True) as conn:
                # only where the lease is still ours (an expired one may have been taken over)
                self._update_rows(conn, tenant, params, match_lease=True)
        self._status_changed(changes)
        return recheck

    # ------------------------------------------------------------------ websocket channel
    def bind(self, tenant: str, sid: str, principal) -> dict | None:
        """``principal`` bound a websocket to the subscription: its handshake Bundle (None
        if it is unknown, not a websocket one, or not ``principal``'s)."""
        with scope(self.engine, tenant, write=True) as conn:
            row = conn.execute(select(S).where(S.c.tenant == tenant, S.c.id == sid)).first()
            if row is None or row.channel != "websocket" or not _owns(principal, row):
                return None
            conn.execute(update(S).where(S.c.tenant == tenant, S.c.id == sid)
                         .values(last_sent=now_us()))
        row = _ns(row)
        row.status = "active" if row.status in LIVE else row.status
        return notification_bundle(self.base_url, tenant, row, "handshake")

    def deliver_ws(self, tenant: str, sid: str, send, principal) -> bool:
        """Deliver a websocket subscription's next notifications (or a heartbeat) through
        ``send(text)`` to ``principal``, who bound the socket; True if something was sent
        and more may be pending. The subscription is leased like a rest-hook one, so it is
        sent once. Full-resource payloads are read and audited as ``principal`` (the one
        who receives them). Raises :class:`NotOwner` once the subscription is no longer
        ``principal``'s (deleted, or taken over by an admin): the socket must let it go."""
        now = now_us()
        with scope(self.engine, tenant, write=True) as conn:
            q = select(S).where(S.c.tenant == tenant, S.c.id == sid)
            if self.pg:
                q = q.with_for_update(skip_locked=True)
            row = conn.execute(q).first()
            if row is None and self.pg:  # locked by a round (SKIP LOCKED), or gone?
                row = conn.execute(select(S.c.owner).where(S.c.tenant == tenant,
                                                           S.c.id == sid)).first()
                if row is not None and _owns(principal, row):
                    return False  # a round holds it: try again on the next poll
            if row is None or not _owns(principal, row):
                raise NotOwner(sid)
            if row.status not in LIVE or row.channel != "websocket" \
                    or row.lease_until >= now:
                return False
            row = _ns(row)
            if row.delivered < row.event_count:
                kind = "event-notification"
                events = self._pending(conn, tenant, [row]).get(sid, [])
            elif row.heartbeat and row.last_sent + row.heartbeat * US <= now:
                kind, events = "heartbeat", []
            else:
                return False
            row.lease_owner = f"{self.id}:{next(self._leases)}"
            row.lease_until = now + int((self.config.timeout + self.config.lease_margin) * US)
            conn.execute(update(S).where(S.c.tenant == tenant, S.c.id == sid).values(
                lease_owner=row.lease_owner, lease_until=row.lease_until))
        sent = False
        try:
            send(self._bundle(row, kind, events, principal).decode())
            sent = True
        finally:
            values = {"lease_owner": None, "lease_until": 0}
            if sent:
                values.update(last_sent=now_us(), failures=0, status="active")
                if events:
                    values["delivered"] = events[-1].number
                    self.sent += len(events)
            with scope(self.engine, tenant, write=True) as conn:
                conn.execute(update(S).where(S.c.tenant == tenant, S.c.id == sid,
                                             S.c.lease_owner == row.lease_owner).values(**values))
        return kind == "event-notification"

    # ------------------------------------------------------------------ status write-back
    def _status_changed(self, changes: list[tuple[str, str, str]]) -> None:
        """Reflect status changes in the Subscription resources — off the dispatcher's loop
        (a repository write per tenant), in order, on one thread."""
        if not changes:
            return
        if self._status_pool is not None and threading.get_ident() == self._loop_thread:
            self._status_pool.submit(self._write_statuses, changes)
        else:
            self._write_statuses(changes)

    def _write_statuses(self, changes: list[tuple[str, str, str]]) -> None:
        by_tenant: dict[str, dict[str, str]] = {}
        for tenant, sid, status in changes:
            by_tenant.setdefault(tenant, {})[sid] = status  # the last one counts
        for tenant, statuses in by_tenant.items():
            repo = self._internal_repo(tenant)
            try:
                with repo.transaction():
                    for sid, status in statuses.items():
                        self._write_status(repo, sid, status)
            except Exception:  # noqa: BLE001 - e.g. one was deleted meanwhile: one at a time
                for sid, status in statuses.items():
                    try:
                        self._write_status(self._internal_repo(tenant), sid, status)
                    except FhirError as e:
                        log.info("subscription %s/%s: status not written back: %s", tenant,
                                 sid, e)
                    except Exception:  # the delivery state stays authoritative
                        log.exception("subscription %s/%s: status not written back", tenant,
                                      sid)

    def _internal_repo(self, tenant: str):
        from fkj.repository.repository import Repository
        from fkj.types import Principal
        repo = Repository(self.services, Principal.system(tenant, subject=EVENTS_SUBJECT), tenant)
        repo.fkj_events_internal = True  # type: ignore[attr-defined]
        return repo

    @staticmethod
    def _write_status(repo, sid: str, status: str) -> None:
        """Set ``Subscription.status`` (a new version) unless it already says so."""
        cur = repo.read("Subscription", sid)
        body = cur.json()
        if body.get("status") == status:
            return
        body["status"] = status
        if status == "error":
            # the same text whatever failed (refused, unreachable, timed out, an address the
            # endpoint policy forbids, an HTTP error): no oracle of internal hosts and ports
            from fkj.events.endpoints import GENERIC_ERROR
            body["error"] = GENERIC_ERROR
        else:
            body.pop("error", None)
        repo.update("Subscription", sid, body, if_match=cur.etag)


class NotOwner(Exception):
    """The websocket's principal does not own the subscription (any more)."""


def _owns(principal, row) -> bool:
    from fkj.events.access import owner_key
    return owner_key(principal_from_json(row.owner)) == owner_key(principal)


def _ns(row):
    return SimpleNamespace(**row._mapping) if row is not None else None


def wait_until(predicate, timeout: float, step: float = 0.02) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
