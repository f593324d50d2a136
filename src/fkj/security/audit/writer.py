"""Group commit for read audits: ``AuditWriter.record`` returns only once the events are
committed, yet concurrent readers share one transaction (and one disk flush) per tenant.

Leader-based: the caller that finds no commit running becomes the *leader* and commits,
in its own thread, every record queued so far (its own and those that arrived while the
previous commit ran), grouped by tenant, each tenant's in one transaction
(:func:`~fkj.security.audit.chain.append_in_transaction`); the others wait for their
future. An uncontended read thus pays no hand-over to another thread. A caller whose
tenant's commit failed gets the exception, so the read fails instead of going unaudited.

A caller on the event loop (the point reads ``fkj.app`` answers without a worker thread)
commits there only when its record is the only one in flight. Otherwise the loop would
stand still for the database round trip and no other request's record could join the
batch: the record is queued for the writer's committer thread, and the caller awaits the
future while the loop goes on serving requests, whose records share the next transaction.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future

from sqlalchemy import Engine

from fkj.errors import ServiceUnavailable
from fkj.security.audit.chain import (
    append_autonomous_pg,
    append_autonomous_sqlite,
    append_in_transaction,
)
from fkj.store.backend import scope

log = logging.getLogger(__name__)


class AuditUnavailable(ServiceUnavailable):
    """The audit record could not be committed, so the access it records must not happen."""


class AuditWriter:
    """Batches audit records from many threads into one transaction per tenant.

    ``sync``: ``"full"`` — a record is on disk (fsync) before :meth:`record` returns;
    ``"normal"`` — it is committed (visible, hash-chained, it survives a crash of the server
    process) before :meth:`record` returns, and reaches the disk with the next WAL sync
    (SQLite ``synchronous=NORMAL`` on the writer's own connection, PostgreSQL
    ``synchronous_commit = off`` for the audit transaction): an operating-system crash or a
    power loss can lose the last moments of read records, never a write's record (those
    commit inside the write's own, fully synchronous transaction) and never the chain's
    consistency.

    ``enabled = False`` turns auditing off (benchmarks only): ``record`` then returns at once.
    """

    def __init__(self, engine: Engine, *, enabled: bool = True, max_batch: int = 5000,
                 timeout: float = 30.0, sync: str = "full", **_ignored):
        if sync not in ("full", "normal"):
            raise ValueError(f"sync must be 'full' or 'normal', not {sync!r}")
        self.sync = sync
        if sync == "normal" and engine.dialect.name == "sqlite":
            # PRAGMA synchronous is per connection: the audit writer gets its own pool
            from fkj.store.engine import make_engine
            engine = make_engine(engine.url.render_as_string(hide_password=False),
                                 pool_size=2, synchronous="NORMAL")
        self.engine = engine
        self.enabled = enabled
        self.max_batch = max_batch
        self.timeout = timeout
        self._pending: deque = deque()
        self._leader = threading.Lock()
        self._wake = threading.Condition()
        self._count_lock = threading.Lock()
        #: records submitted and not yet committed (or failed)
        self._in_flight = 0
        self._committer: threading.Thread | None = None
        self._closed = False
        self._pg_function = True
        #: statistics: transactions committed and records written
        self.commits = 0
        self.records = 0

    # ------------------------------------------------------------------ public API
    def submit(self, tenant: str, events: Sequence[dict], *, lead: bool | None = True
               ) -> Future:
        """Queue ``events`` and, unless a commit is running, commit the queue in this
        thread; the future completes (or fails) when they are committed.

        ``lead=None`` (a caller on the event loop): commit here only when no other record
        is in flight (a lone request pays no hand-over to another thread), else leave the
        commit to the committer thread, so that the loop serves the next requests and their
        records join the batch."""
        fut: Future = Future()
        if not self.enabled or not events:
            fut.set_result(None)
            return fut
        if self._closed:
            raise AuditUnavailable("the audit writer is closed")
        with self._count_lock:
            alone = self._in_flight == 0
            self._in_flight += 1
        fut.add_done_callback(self._finished)
        self._pending.append((tenant, list(events), fut))
        if lead or (lead is None and alone):
            self._lead()
        else:
            self._hand_over()
        return fut

    def _finished(self, _fut) -> None:
        with self._count_lock:
            self._in_flight -= 1

    def record(self, tenant: str, events: Sequence[dict]) -> None:
        """Block until ``events`` are committed to ``tenant``'s audit log; raise
        :class:`AuditUnavailable` if they could not be."""
        fut = self.submit(tenant, events)
        try:
            fut.result(timeout=self.timeout)
        except AuditUnavailable:
            raise
        except Exception as e:
            raise AuditUnavailable(f"the access could not be audited: {e}") from e

    async def record_async(self, tenant: str, events: Sequence[dict]) -> None:
        """As :meth:`record`, awaiting instead of blocking the event loop."""
        fut = self.submit(tenant, events)
        try:
            await asyncio.wait_for(asyncio.wrap_future(fut), self.timeout)
        except AuditUnavailable:
            raise
        except Exception as e:
            raise AuditUnavailable(f"the access could not be audited: {e}") from e

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued; refuse new records."""
        self._closed = True
        with self._wake:
            self._wake.notify_all()
        if self._leader.acquire(timeout=timeout):
            try:
                self._drain()
            finally:
                self._leader.release()

    # ------------------------------------------------------------------ committing
    def _hand_over(self) -> None:
        with self._wake:
            if self._committer is None or not self._committer.is_alive():
                self._committer = threading.Thread(target=self._commit_loop, daemon=True,
                                                   name="fkj-audit-commit")
                self._committer.start()
            self._wake.notify()

    def _commit_loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait(1.0)
            if not self._pending and self._closed:
                return
            # blocking: a leader in another thread may be finishing; whatever it left
            # queued is committed here
            with self._leader:
                self._drain()

    def _lead(self) -> None:
        # whoever holds the lock commits everything queued; a record queued just after the
        # leader's last look is picked up by re-checking after the release
        while self._pending and self._leader.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._leader.release()

    def _drain(self) -> None:
        while self._pending:
            batch, n = [], 0
            while self._pending and n < self.max_batch:
                item = self._pending.popleft()
                batch.append(item)
                n += len(item[1])
            self._commit(batch)

    def _commit(self, batch: list[tuple[str, list[dict], Future]]) -> None:
        by_tenant: dict[str, list[tuple[list[dict], Future]]] = {}
        for tenant, events, fut in batch:
            if fut.set_running_or_notify_cancel():
                by_tenant.setdefault(tenant, []).append((events, fut))
        for tenant, items in by_tenant.items():
            try:
                events = [e for evs, _ in items for e in evs]
                if self.engine.dialect.name == "postgresql" and self._pg_function:
                    try:
                        append_autonomous_pg(self.engine, tenant, events,
                                             "off" if self.sync == "normal" else "on")
                    except Exception as e:  # a database migrated before the function existed
                        if "fkj_audit_append" not in str(e):
                            raise
                        log.warning("fkj_audit_append() is missing (run `fkj migrate`); "
                                    "appending statement by statement")
                        self._pg_function = False
                        with scope(self.engine, tenant, write=True) as conn:
                            append_in_transaction(conn, tenant, events)
                elif self.engine.dialect.name == "sqlite":
                    append_autonomous_sqlite(self.engine, tenant, events)
                else:
                    with scope(self.engine, tenant, write=True) as conn:
                        append_in_transaction(conn, tenant, events)
            except Exception as e:  # noqa: BLE001 - reported to every waiting caller
                log.error("audit commit for tenant %s failed: %s", tenant, e)
                err = AuditUnavailable(f"the access could not be audited: {e}")
                for _, fut in items:
                    fut.set_exception(err)
                continue
            self.commits += 1
            self.records += sum(len(events) for events, _ in items)
            for _, fut in items:
                fut.set_result(None)
