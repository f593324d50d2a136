"""Group commit for read audits: ``AuditWriter.record`` returns only once the events are
committed, yet concurrent readers share one transaction (and one fsync) per tenant.

A single background thread takes every request queued while the previous commit ran (plus
whatever arrives within ``linger`` seconds), groups them by tenant, appends each tenant's
events in one transaction (:func:`~fkj.security.audit.chain.append_in_transaction`) and then
wakes the callers — with the exception if their tenant's commit failed, so the read fails
instead of going unaudited.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

from sqlalchemy import Engine

from fkj.errors import ServiceUnavailable
from fkj.security.audit.chain import append_in_transaction
from fkj.store.backend import scope

log = logging.getLogger(__name__)


class AuditUnavailable(ServiceUnavailable):
    """The audit record could not be committed, so the access it records must not happen."""


class AuditWriter:
    """Batches audit records from many threads into one transaction per tenant.

    ``enabled = False`` turns auditing off (benchmarks only): ``record`` then returns at once.
    """

    def __init__(self, engine: Engine, *, enabled: bool = True, linger: float = 0.002,
                 max_batch: int = 5000, timeout: float = 30.0):
        self.engine = engine
        self.enabled = enabled
        self.linger = linger
        self.max_batch = max_batch
        self.timeout = timeout
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: statistics: transactions committed and records written
        self.commits = 0
        self.records = 0

    # ------------------------------------------------------------------ public API
    def submit(self, tenant: str, events: Sequence[dict]) -> Future:
        """Queue ``events``; the future completes (or fails) when they are committed."""
        fut: Future = Future()
        if not self.enabled or not events:
            fut.set_result(None)
            return fut
        if self._closed:
            raise AuditUnavailable("the audit writer is closed")
        self._ensure_thread()
        self._queue.put((tenant, list(events), fut))
        return fut

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
        """Commit what is queued and stop the background thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    # ------------------------------------------------------------------ the committing thread
    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fkj-audit-writer",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            stop = item is None
            batch = [] if stop else [item]
            deadline = time.monotonic() + self.linger
            n = len(item[1]) if item else 0
            while n < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if stop or remaining <= 0:
                        break
                    try:
                        nxt = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                if nxt is None:
                    stop = True
                    continue
                batch.append(nxt)
                n += len(nxt[1])
            if batch:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[str, list[dict], Future]]) -> None:
        by_tenant: dict[str, list[tuple[list[dict], Future]]] = {}
        for tenant, events, fut in batch:
            if fut.set_running_or_notify_cancel():
                by_tenant.setdefault(tenant, []).append((events, fut))
        for tenant, items in by_tenant.items():
            try:
                with scope(self.engine, tenant, write=True) as conn:
                    append_in_transaction(conn, tenant, [e for events, _ in items for e in events])
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
