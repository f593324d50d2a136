"""The writer of read audit records: ``AuditWriter.submit`` / ``record`` return once a
record is *written*; the records reach the tenant's hash chain in the database in batches.

Two ways of writing (``reads``):

* ``"journal"`` (what ``fkj serve`` uses): a record is written to this process's audit
  journal (:mod:`fkj.security.audit.journal`) before the answer — one ``write`` of one
  line, synced to disk first with ``sync="full"`` — and the *shipper* thread moves the
  journal's records into the chain every :data:`SHIP_INTERVAL` seconds, many records per
  transaction, together with the journal's watermark (exactly once, also after a crash).
  If the journal cannot be written, the access fails (503). If the chain has not taken
  records for :data:`MAX_LAG` seconds (the database refuses them), new accesses fail too,
  until it takes them again: the journal never grows without bound behind a broken log.
  Orphaned journals of processes that died are shipped by the shipper at start and every
  :data:`~fkj.security.audit.journal.ORPHAN_SCAN` seconds.
* ``"database"`` (``journal=None``; the CLI, and ``FKJ_AUDIT_READS=database``): a record is
  committed to the chain before :meth:`AuditWriter.record` returns. Concurrent callers share
  one transaction per tenant (group commit): the caller that finds no commit running
  becomes the *leader* and commits, in its own thread, every record queued so far; the
  others wait for their future. A caller on the event loop commits there only when its
  record is the only one in flight; otherwise the record is queued for the committer
  thread while the loop serves other requests, whose records join the batch.

:meth:`AuditWriter.flush` chains everything written so far (``$tilgangslogg`` and the other
readers of the log call it, so a process sees its own accesses at once).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future

import orjson
from sqlalchemy import Engine

from fkj.errors import ServiceUnavailable
from fkj.security.audit.chain import (
    append_autonomous_pg,
    append_autonomous_sqlite,
    append_in_transaction,
    audit_row,
    forget_journal,
    probe_append,
    shipped_positions,
)
from fkj.security.audit.facts import EventFacts, event_of
from fkj.security.audit.journal import ORPHAN_SCAN, AuditJournal, Entry, orphans
from fkj.security.audit.quarantine import (
    INSERT,
    Quarantined,
    describe,
    insert_params,
    now_us,
    stand_in,
    transient,
)
from fkj.security.audit.storable import storable
from fkj.store.backend import scope

log = logging.getLogger(__name__)

#: seconds between two shipments of journaled records into the chain (a record is in the
#: chain at most about this long after it was written). Each shipment is a write
#: transaction; on SQLite a commit also empties the page cache of every other connection
#: (they re-read what they need), so shipping every 50 ms slowed the searches of a busy
#: server by a tenth; once a second it costs them next to nothing
SHIP_INTERVAL = 1.0
#: new accesses fail once the oldest record not yet chained is this many seconds old
MAX_LAG = 5.0
#: … or once this many records wait to be chained
MAX_BACKLOG = 100_000


class AuditUnavailable(ServiceUnavailable):
    """The audit record could not be written, so the access it records must not happen."""


#: the answer of every write that is done when ``submit`` returns (a journal line, or
#: nothing to write): one completed future shared by all, instead of a new one per record
_DONE: Future = Future()
_DONE.set_result(None)


def _materialise(entries: list[Entry]) -> None:
    """Journal entries that hold a request's facts get their AuditEvent built, and their
    audit row and line as if the row had been written (once: a retried shipment reuses
    them)."""
    for e in entries:
        facts = e.row.get("f")
        if facts is not None:
            e.row = audit_row(event_of(facts))
            e.line = orjson.dumps({**e.row, "t": e.tenant, "j": e.seq})


def _repaired(entry: Entry) -> Entry | None:
    """``entry`` with its audit row rebuilt from what it records (the AuditEvent in its
    content, or its facts), storable; None if that cannot be done or changes nothing."""
    row = entry.row
    try:
        if isinstance(row.get("f"), dict):
            event = event_of(storable(row["f"]))
        else:
            event = orjson.loads(row["content"])
            if not isinstance(event, dict):
                return None
        rebuilt = audit_row(event)
    except Exception:  # noqa: BLE001 - not repairable: quarantined instead
        return None
    if rebuilt == row:
        return None
    line = orjson.dumps({**rebuilt, "t": entry.tenant, "j": entry.seq})
    return Entry(entry.tenant, entry.seq, rebuilt, line, entry.journal)


class _Interrupted(Exception):
    """The database cannot take records now; ``done`` of the entries given were chained
    (or quarantined) before it stopped."""

    def __init__(self, done: int, error: BaseException):
        super().__init__(str(error))
        self.done = done
        self.error = error


def _failed(error: Exception) -> Future:
    fut: Future = Future()
    fut.set_exception(error)
    return fut


class AuditWriter:
    """Writes audit records of reads from many threads; see the module docstring.

    ``sync``: ``"full"`` — a record is on disk (journal ``fdatasync``, or a synchronous
    commit) before :meth:`record` returns; ``"normal"`` — it is written (journal) or
    committed (database; ``synchronous_commit = off`` on PostgreSQL, ``synchronous=NORMAL``
    on SQLite) before :meth:`record` returns and reaches the disk moments later: an
    operating-system crash or a power loss can lose the last moments of read records, never
    a write's record (it commits inside the write's own, fully synchronous transaction) and
    never the chain's consistency. Shipped journal records are committed synchronously.

    ``enabled = False`` turns auditing off (benchmarks only): ``record`` then returns at once.
    """

    def __init__(self, engine: Engine, *, enabled: bool = True, max_batch: int = 5000,
                 timeout: float = 30.0, sync: str = "full", journal: AuditJournal | None = None,
                 ship_interval: float = SHIP_INTERVAL, max_lag: float = MAX_LAG,
                 max_backlog: int = MAX_BACKLOG, checkpointer=None, **_ignored):
        if sync not in ("full", "normal"):
            raise ValueError(f"sync must be 'full' or 'normal', not {sync!r}")
        self.sync = sync
        self.journal = journal
        if sync == "normal" and journal is None and engine.dialect.name == "sqlite":
            # PRAGMA synchronous is per connection: the audit writer gets its own pool
            from fkj.store.engine import make_engine
            engine = make_engine(engine.url.render_as_string(hide_password=False),
                                 pool_size=2, synchronous="NORMAL")
        self.engine = engine
        self.enabled = enabled
        self.max_batch = max_batch
        self.timeout = timeout
        self.ship_interval = ship_interval
        self.max_lag = max_lag
        self.max_backlog = max_backlog
        # database mode: (tenant, events, future) waiting for a commit
        self._pending: deque = deque()
        # journal mode: (entry, monotonic time written) waiting to be chained
        self._journaled: deque = deque()
        self._inflight_since: float | None = None
        self._tenants: set[str] = set()
        self._leader = threading.Lock()
        self._wake = threading.Condition()
        self._count_lock = threading.Lock()
        #: records submitted and not yet committed (or failed), database mode
        self._in_flight = 0
        self._committer: threading.Thread | None = None
        self._closed = False
        self._flush_now = False
        #: the last error of a shipment (journal mode), for the refusals it causes
        self.last_error: str | None = None
        #: statistics: transactions committed and records written to the chain
        self.commits = 0
        self.records = 0
        #: records the database refused and that were quarantined by this writer
        self.quarantined = 0
        if journal is not None and enabled:
            self._committer = threading.Thread(target=self._ship_loop, daemon=True,
                                               name="fkj-audit-ship")
            self._committer.start()
        #: anchors the chains outside the database (fkj.security.audit.checkpoints)
        self.checkpointer = checkpointer
        if checkpointer is not None and enabled:
            checkpointer.start()

    # ------------------------------------------------------------------ public API
    def submit(self, tenant: str, events: Sequence[dict], *, lead: bool | None = True
               ) -> Future:
        """Write ``events``; the future completes (or fails) when they are written (journal)
        or committed (database mode).

        ``lead`` (database mode): commit the queue in this thread unless a commit is running;
        ``lead=None`` (a caller on the event loop): commit here only when no other record is
        in flight, else leave the commit to the committer thread, so that the loop serves
        the next requests and their records join the batch."""
        if not self.enabled or not events:
            return _DONE
        if self._closed:
            raise AuditUnavailable("the audit writer is closed")
        if self.journal is not None:
            return self._write(tenant, events)
        events = [e.build() if isinstance(e, EventFacts) else e for e in events]
        fut: Future = Future()
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

    def record(self, tenant: str, events: Sequence[dict]) -> None:
        """Block until ``events`` are written to ``tenant``'s audit log; raise
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

    def flush(self, timeout: float | None = None) -> None:
        """Chain every record written before this call (journal mode; in database mode they
        are chained already). Raises :class:`AuditUnavailable` if that fails."""
        if self.journal is None or not self.enabled:
            return
        if not self._leader.acquire(timeout=self.timeout if timeout is None else timeout):
            raise AuditUnavailable("the audit log did not take the records in time")
        try:
            while self._journaled:
                if not self._ship():
                    raise AuditUnavailable(f"the audit log does not take records: "
                                           f"{self.last_error}")
        finally:
            self._leader.release()

    def lag(self) -> float:
        """Seconds since the oldest record not yet chained was written (journal mode)."""
        oldest = [t for t in (self._front_time(), self._inflight_since) if t is not None]
        return time.monotonic() - min(oldest) if oldest else 0.0

    def recover(self) -> int:
        """Ship the records of orphaned journals (of processes that died) into the chain and
        delete the journals; returns how many records were chained."""
        if self.journal is None:
            return 0
        with self._leader:
            return self._recover_orphans()

    def close(self, timeout: float = 10.0) -> None:
        """Chain (or commit) what is queued; refuse new records. A journal whose records
        could not all be chained stays on disk for the next process."""
        self._closed = True
        with self._wake:
            self._wake.notify_all()
        if self._leader.acquire(timeout=timeout):
            try:
                if self.journal is not None:
                    while self._journaled and self._ship():
                        pass
                    retired = self.journal.close(chained=not self._journaled)
                    if retired:
                        self._forget(retired)
                else:
                    self._drain()
            finally:
                self._leader.release()
        t = self._committer
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self.checkpointer is not None:
            self.checkpointer.stop(timeout=min(timeout, 5.0))  # anchors what was chained

    # ------------------------------------------------------------------ journal mode
    def _write(self, tenant: str, events: Sequence[dict]) -> Future:
        lag = self.lag()
        if lag > self.max_lag or len(self._journaled) >= self.max_backlog:
            self._poke()
            return _failed(AuditUnavailable(
                f"the access could not be audited: the audit log has not taken records for "
                f"{lag:.1f} s ({len(self._journaled)} waiting): {self.last_error}"))
        # the facts of a request's record (fkj.security.audit.facts) as they are; the event
        # is built when it is chained (_materialise)
        rows = [{"f": e.to_json()} if isinstance(e, EventFacts) else audit_row(e)
                for e in events]
        now = time.monotonic()
        queue = self._journaled
        first = False

        def queued(entries: list[Entry]) -> None:
            nonlocal first
            first = not queue
            queue.extend((e, now) for e in entries)
        try:
            self.journal.append(tenant, rows, then=queued)
        except OSError as e:
            log.error("the audit journal cannot be written: %s", e)
            return _failed(AuditUnavailable(
                f"the access could not be audited: the audit journal cannot be written: {e}"))
        self._tenants.add(tenant)
        if first:  # the shipper sleeps while nothing waits: the first record wakes it
            with self._wake:
                self._wake.notify()
        return _DONE

    def _front_time(self) -> float | None:
        try:
            return self._journaled[0][1]
        except IndexError:
            return None

    def _poke(self) -> None:
        with self._wake:
            self._flush_now = True
            self._wake.notify()

    def _ship_loop(self) -> None:
        """One shipment (up to ``max_batch`` records) per ``ship_interval``, so that records
        arriving meanwhile join the next one: under a steady stream of reads the shipments
        stay few and large instead of chasing each record (each costs a transaction and, on
        SQLite, a disk flush). A backlog of a whole batch or more is shipped at once."""
        next_scan = 0.0  # orphans first: a server started after a crash ships them at once
        failures = 0
        last = time.monotonic()
        while True:
            with self._wake:
                while (not self._journaled and not self._closed
                       and time.monotonic() < next_scan):
                    self._wake.wait(min(1.0, max(0.0, next_scan - time.monotonic())))
                if self._closed:
                    return  # close() ships the rest
                # wait for the next shipment's time (longer after failures)
                deadline = last + self.ship_interval * (2 ** min(failures, 5))
                while (not self._closed and not self._flush_now
                       and len(self._journaled) < self.max_batch):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                self._flush_now = False
                if self._closed:
                    return
            last = time.monotonic()
            with self._leader:
                ok = self._ship()
                failures = 0 if ok else failures + 1
                if time.monotonic() >= next_scan:
                    try:
                        self._recover_orphans()
                    except Exception as e:  # noqa: BLE001 - retried at the next scan
                        log.error("recovering orphaned audit journals failed: %s", e)
                    next_scan = time.monotonic() + ORPHAN_SCAN

    def _ship(self) -> bool:
        """Chain up to ``max_batch`` journaled records, one transaction per tenant (with the
        journal's watermark). Records of a tenant whose append failed go back to the front
        of the queue, in order. Call with the leader lock held. True if all went in."""
        taken = []
        while self._journaled and len(taken) < self.max_batch:
            taken.append(self._journaled.popleft())
        if not taken:
            return True
        self._inflight_since = taken[0][1]
        by_tenant: dict[str, list] = {}
        for item in taken:
            by_tenant.setdefault(item[0].tenant, []).append(item)
        failed: list = []
        try:
            for tenant, items in by_tenant.items():
                entries = [e for e, _ in items]
                try:
                    self._chain(tenant, entries)
                except _Interrupted as stop:  # kept and retried; see MAX_LAG
                    self.last_error = describe(stop.error)
                    log.error("chaining %d audit records of tenant %s failed (kept in the "
                              "journal, retried): %s", len(entries) - stop.done, tenant,
                              self.last_error)
                    failed.extend(items[stop.done:])
                    self.records += stop.done
                    continue
                self.records += len(entries)
        finally:
            if failed:
                failed.sort(key=lambda item: item[0].seq)
                self._journaled.extendleft(reversed(failed))
            self._inflight_since = None
        if failed:
            return False
        self.last_error = None
        last = taken[-1][0]
        retired = self.journal.retire_if_full((last.journal, last.seq))
        if retired:
            self._forget(retired)
        return True

    def _append(self, tenant: str, entries: list[Entry], then=None) -> None:
        _materialise(entries)
        rows = [e.row for e in entries]
        watermark = (entries[0].journal, entries[-1].seq)
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            append_autonomous_pg(self.engine, tenant, rows, "on", watermark,
                                 lines=[e.line for e in entries], then=then)
        elif dialect == "sqlite":
            append_autonomous_sqlite(self.engine, tenant, rows, watermark, then=then)
        else:  # pragma: no cover - the two backends above are the supported ones
            raise RuntimeError(f"no audit append for {dialect}")
        self.commits += 1

    # ------------------------------------------------------------------ one bad record
    def _chain(self, tenant: str, entries: list[Entry], *, probed: bool = False) -> None:
        """Chain ``entries`` (one tenant's, in journal order). If the database refuses them
        for what is in them, bisect: chain each half on its own, down to the record it
        refuses, which is repaired or quarantined (:mod:`fkj.security.audit.quarantine`).
        Raises :class:`_Interrupted` (with how many of ``entries`` are done) when the
        database cannot take records now: those left wait in the journal."""
        try:
            self._append(tenant, entries)
            return
        except Exception as e:
            if transient(e):
                raise _Interrupted(0, e) from e
            error = e
        if not probed:
            # does the database take a plain record? If not, it is not these records'
            # fault: nobody is blamed, they wait (once per shipment, not per half)
            try:
                probe_append(self.engine, tenant)
            except Exception as e:
                raise _Interrupted(0, e) from e
        if len(entries) == 1:
            self._settle(tenant, entries[0], error)
            return
        mid = len(entries) // 2
        self._chain(tenant, entries[:mid], probed=True)
        try:
            self._chain(tenant, entries[mid:], probed=True)
        except _Interrupted as stop:
            stop.done += mid
            raise

    def _settle(self, tenant: str, entry: Entry, error: Exception) -> None:
        """The one record the database refused: chain it repaired, else quarantine it."""
        repaired = _repaired(entry)
        if repaired is not None:
            try:
                self._append(tenant, [repaired])
                log.warning("audit record %s:%s of tenant %s was refused as written (%s) and "
                            "chained rebuilt, its characters made storable", entry.journal,
                            entry.seq, tenant, describe(error))
                return
            except Exception as e:
                if transient(e):
                    raise _Interrupted(0, e) from e
                error = e
        try:
            probe_append(self.engine, tenant)  # still the record's fault, not the database's?
        except Exception as e:
            raise _Interrupted(0, e) from e
        row = entry.row
        q = Quarantined(tenant, entry.line, entry.journal, entry.seq, describe(error),
                        row if isinstance(row, dict) else None)
        now = now_us()
        held = Entry(tenant, entry.seq, audit_row(stand_in(q, now)), b"", entry.journal)
        held.line = orjson.dumps({**held.row, "t": tenant, "j": entry.seq})
        try:
            self._append(tenant, [held],
                         then=lambda execute, seqs: execute(INSERT,
                                                            insert_params(q, seqs[0], now)))
        except Exception as e:
            raise _Interrupted(0, e) from e
        self.quarantined += 1
        log.error("AUDIT RECORD QUARANTINED: tenant %s, journal %s position %s, sha256 %s: "
                  "the database refused it (%s). The other records are chained; see "
                  "`fkj audit quarantine list --tenant %s`.", tenant, entry.journal or "-",
                  entry.seq, q.sha256, q.error, tenant)

    def _forget(self, journal_id: str) -> None:
        try:
            forget_journal(self.engine, journal_id, sorted(self._tenants))
        except Exception as e:  # noqa: BLE001 - leftover watermark rows are harmless
            log.warning("removing the watermarks of audit journal %s failed: %s",
                        journal_id, e)

    def _recover_orphans(self) -> int:
        total = 0
        for orphan in orphans(self.journal.directory, self.journal.database):
            tenants = list(dict.fromkeys(e.tenant for e in orphan.entries))
            try:
                done = shipped_positions(self.engine, orphan.journal_id, tenants) \
                    if tenants else {}
                n = 0
                for tenant in tenants:
                    todo = [e for e in orphan.entries
                            if e.tenant == tenant and e.seq > done[tenant]]
                    for i in range(0, len(todo), self.max_batch):
                        chunk = todo[i:i + self.max_batch]
                        try:
                            self._chain(tenant, chunk)
                        except _Interrupted as stop:
                            n += stop.done
                            raise stop.error from None
                        n += len(chunk)
            except Exception as e:  # noqa: BLE001 - left in place, retried at the next scan
                log.error("audit journal %s could not be chained yet: %s", orphan.path,
                          describe(e))
                orphan.release(delete=False)
                self.records += n
                continue
            orphan.release(delete=True)
            if tenants:
                try:
                    forget_journal(self.engine, orphan.journal_id, tenants)
                except Exception as e:  # noqa: BLE001
                    log.warning("removing the watermarks of %s failed: %s",
                                orphan.journal_id, e)
            if n:
                log.warning("chained %d audit records from the journal of a process that "
                            "ended without chaining them (%s)", n, orphan.path.name)
            total += n
            self.records += n
        return total

    # ------------------------------------------------------------------ database mode
    def _finished(self, _fut) -> None:
        with self._count_lock:
            self._in_flight -= 1

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
            self._commit_items(tenant, items)

    def _commit_items(self, tenant: str, items: list[tuple[list[dict], Future]]) -> None:
        """Commit the records of ``items`` in one transaction; if the database refuses them
        for what is in them, each caller's records on their own, so that only the access
        whose record cannot be stored is refused."""
        try:
            events = [e for evs, _ in items for e in evs]
            dialect = self.engine.dialect.name
            if dialect == "postgresql":
                append_autonomous_pg(self.engine, tenant, [audit_row(e) for e in events],
                                     "off" if self.sync == "normal" else "on")
            elif dialect == "sqlite":
                append_autonomous_sqlite(self.engine, tenant, [audit_row(e) for e in events])
            else:
                with scope(self.engine, tenant, write=True) as conn:
                    append_in_transaction(conn, tenant, events)
        except Exception as e:  # noqa: BLE001 - reported to the waiting callers
            if len(items) > 1 and not transient(e):
                for item in items:
                    self._commit_items(tenant, [item])
                return
            log.error("audit commit for tenant %s failed: %s", tenant, describe(e))
            err = AuditUnavailable(f"the access could not be audited: {describe(e)}")
            for _, fut in items:
                fut.set_exception(err)
            return
        self.commits += 1
        self.records += sum(len(events) for events, _ in items)
        for _, fut in items:
            fut.set_result(None)
