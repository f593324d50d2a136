"""Bulk import of FHIR NDJSON and Bundle files into one tenant (``fkj import``).

Two passes over the input, both streaming:

1. **Scan**: every file is read once to collect the ``(type, id)`` of each resource it holds
   (and the ``fullUrl`` → ``Type/id`` map of Bundle entries) into a temporary SQLite file,
   so memory stays flat whatever the size of the import.
2. **Load**: files are read again; each resource is validated and indexed through
   :meth:`Repository.prepare`, its references are checked against the import set and the
   tenant's existing resources, and the good ones are stored in batches (one transaction per
   batch). The same transaction records, in ``bulk_import_file``, the last committed line of
   the file: a rerun after a crash (even SIGKILL) skips exactly the committed lines.

Resources keep their own ids (a repeated line is an update, never a duplicate). Bundle entries
without an id get ``uuid5(file name | fullUrl)`` and ``urn:uuid:`` references are rewritten.
Bad lines are reported (NDJSON OperationOutcomes plus a text summary, see docs/migration.md)
and do not stop the good ones.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, insert, select, update

from fkj.bulk._pipeline import ERR, WorkState, init_worker, work_prepare, work_scan
from fkj.bulk._writer import Write
from fkj.bulk._writer import write as write_rows
from fkj.bulk.reader import (
    FatalImportError,
    IdSet,
    Source,
    _bundle_items,
    _ndjson_lines,
    discover,
    items,
)
from fkj.bulk.tables import bulk_import_file
from fkj.errors import FhirError
from fkj.repository.patients import scan_facts
from fkj.store.backend import now_us, scope
from fkj.store.schema import resource

log = logging.getLogger(__name__)

DEFAULT_BATCH = 2000
#: NDJSON still to import from which the scan runs in the worker processes
PARALLEL_SCAN_BYTES = 8 << 20
SCAN_CHUNK = 5000


# ---------------------------------------------------------------------------- reporting
@dataclass
class ImportError_:
    file: str
    line: int
    reason: str
    resource: str | None = None
    expression: list[str] = field(default_factory=list)
    code: str = "invalid"

    def outcome(self) -> dict:
        issue: dict[str, Any] = {"severity": "error", "code": self.code,
                                 "diagnostics": self.reason,
                                 "location": [f"{self.file}:{self.line}"]}
        if self.expression:
            issue["expression"] = self.expression
        ext = [{"url": "file", "valueString": self.file},
               {"url": "line", "valueInteger": self.line}]
        if self.resource:
            ext.append({"url": "resource", "valueString": self.resource})
        return {"resourceType": "OperationOutcome",
                "extension": [{"url": REPORT_EXTENSION, "extension": ext}],
                "issue": [issue]}


REPORT_EXTENSION = "https://fkj.no/fhir/StructureDefinition/bulk-import-source"


class Report:
    """``errors.ndjson`` (one OperationOutcome per bad line, appended across reruns) and
    ``summary.txt`` (rewritten at the end of every run)."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._fh = None
        self.count = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._fh = open(directory / "errors.ndjson", "ab")

    def write(self, errors: list[ImportError_]) -> None:
        self.count += len(errors)
        if self._fh is not None and errors:
            self._fh.write(b"".join(orjson.dumps(e.outcome()) + b"\n" for e in errors))
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


# ---------------------------------------------------------------------------- result
@dataclass
class ImportResult:
    files: list[Source]
    #: this run
    read: int = 0
    loaded: int = 0
    failed: int = 0
    skipped: int = 0
    fatal: str | None = None
    dry_run: bool = False
    report_dir: Path | None = None

    @property
    def total_loaded(self) -> int:
        return sum(s.loaded for s in self.files)

    @property
    def total_failed(self) -> int:
        return sum(s.failed for s in self.files)

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return 2
        return 1 if (self.total_failed or self.failed) else 0

    def summary(self) -> str:
        lines = []
        mode = "dry run (nothing stored)" if self.dry_run else "import"
        if self.fatal:
            lines.append(f"FATAL: {self.fatal}")
        lines.append(f"{mode}: {len(self.files)} file(s); this run read {self.read}, "
                     f"loaded {self.loaded}, rejected {self.failed}, skipped {self.skipped} "
                     "already committed")
        if not self.dry_run:
            lines.append(f"all runs: loaded {self.total_loaded}, rejected {self.total_failed}")
        for s in self.files:
            state = "done" if s.done else f"at line {s.line}"
            lines.append(f"  {s.path}: loaded {s.loaded}, rejected {s.failed} ({state})")
        if self.report_dir is not None:
            lines.append(f"error report: {self.report_dir / 'errors.ndjson'}")
        lines.append(f"exit status {self.exit_code}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- the importer
class Importer:
    def __init__(self, engine, settings, tenant: str, *, batch_size: int = DEFAULT_BATCH,
                 dry_run: bool = False, report_dir: Path | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 on_total: Callable[[int], None] | None = None,
                 subject: str = "fkj-import", registry=None, workers: int | None = None,
                 writers: int | None = None):
        from fkj.repository.repository import Repository
        from fkj.repository.services import Services
        from fkj.search.registry import default_registry
        from fkj.security.audit.operator import operator_principal

        self.services = Services(engine=engine, settings=settings, indexing=settings.indexing)
        self.services.extras.setdefault("registry", registry or default_registry())
        self.tenant = tenant
        # the operator who runs the import is its audit records' agent, the tool the client
        self.repo = Repository(self.services, operator_principal(tenant, subject), tenant)
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.report = Report(report_dir)
        self.report_dir = report_dir
        self.on_progress = on_progress or (lambda n: None)
        self.on_total = on_total or (lambda n: None)
        #: processes validating and indexing in parallel (0: in this process)
        self.workers = default_workers() if workers is None else workers
        self._pool = None
        self._state: WorkState | None = None
        #: database connections storing batches at once (PostgreSQL; see _Pipeline)
        self.writers = writers
        self._pipeline: _Pipeline | None = None
        self._pg = False
        #: PostgreSQL: planner statistics of ``resource`` kept up while it grows
        self._growth = None

    # -------------------------------------------------------------- entry
    def run(self, paths: list[str | Path]) -> ImportResult:
        result = ImportResult([], dry_run=self.dry_run, report_dir=self.report_dir)
        ids = None
        try:
            self.services.tenants.get(self.tenant)
            result.files = discover(paths)
            if not result.files:
                raise FatalImportError("no NDJSON (.ndjson, .jsonl) or JSON files found")
            self._load_progress(result.files)
            ids = IdSet()
            self._pg = self.services.engine.dialect.name == "postgresql"
            todo_bytes = sum(s.size for s in result.files if not s.done and s.kind == "ndjson")
            if self.workers > 0 and todo_bytes >= PARALLEL_SCAN_BYTES:
                self._pool = self._make_pool(ids)
            total = self._scan(result.files, ids)
            if self._pool is None:
                if self.workers > 0 and total >= 2 * self.batch_size:
                    self._pool = self._make_pool(ids)
                else:
                    self._state = WorkState(self.repo, self.tenant, ids.path, self._pg)
            self.on_total(total)
            if self._pg and not self.dry_run:
                from fkj.store.maintenance import GrowthAnalyzer
                # the batches look stored versions and references up by id in ``resource``
                self._growth = GrowthAnalyzer(self.services.engine, ("resource",))
            self._pipeline = _Pipeline(self, default_writers() if self.writers is None
                                       else self.writers)
            self._load(result.files, ids, result)
            self._pipeline.drain(result)
        except FatalImportError as e:
            result.fatal = str(e)
        except FhirError as e:
            result.fatal = e.diagnostics
        except OSError as e:
            result.fatal = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - database down, etc.: report, exit 2
            result.fatal = f"{type(e).__name__}: {e}"
        finally:
            if self._pipeline is not None:  # batches committed meanwhile still count
                self._pipeline.close(result)
                self._pipeline = None
            if self._growth is not None:
                self._growth.close()
                self._growth = None
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None
            if self._state is not None:
                self._state.close()
                self._state = None
            if ids is not None:
                ids.close()
            self.report.close()
        if self.report_dir is not None:
            (self.report_dir / "summary.txt").write_text(result.summary() + "\n")
        if result.loaded and not result.dry_run:
            self._after_load()
        return result

    def _after_load(self) -> None:
        """The loaded data may change access decisions (care teams, blocks …) and the
        planner's picture of the tables: tell the servers, gather SQLite statistics."""
        from fkj.security.policy.cache import announce_change
        from fkj.store.maintenance import refresh_statistics
        try:
            announce_change(self.services.engine, self.tenant)
            refresh_statistics(self.services.engine)
        except Exception:  # noqa: BLE001 - the import itself succeeded
            log.exception("after-import maintenance failed")

    # -------------------------------------------------------------- job table
    def _load_progress(self, files: list[Source]) -> None:
        if self.dry_run:
            return
        t = bulk_import_file.c
        with scope(self.services.engine, self.tenant, write=True) as conn:
            rows = {r.file_key: r for r in conn.execute(
                select(bulk_import_file).where(t.tenant == self.tenant,
                                               t.file_key.in_([s.key for s in files])))}
            for s in files:
                r = rows.get(s.key)
                if r is None:
                    conn.execute(insert(bulk_import_file).values(
                        tenant=self.tenant, file_key=s.key, path=str(s.path), size=s.size,
                        head_sha=s.head_sha, line=0, loaded=0, failed=0, done=False,
                        updated=now_us()))
                else:
                    s.line, s.loaded, s.failed, s.done = r.line, r.loaded, r.failed, r.done

    def _commit_progress(self, conn, src: Source, after: int, line: int, loaded: int,
                         failed: int, done: bool) -> None:
        """The file's committed line moves from ``after`` to ``line``, in the batch's
        transaction."""
        t = bulk_import_file.c
        res = conn.execute(update(bulk_import_file).where(
            t.tenant == self.tenant, t.file_key == src.key, t.line == after).values(
            line=line, loaded=t.loaded + loaded, failed=t.failed + failed, done=done,
            updated=now_us()))
        if res.rowcount != 1:
            raise FatalImportError(f"{src.path} is being imported by another process")

    # -------------------------------------------------------------- pass 1
    def _make_pool(self, ids: IdSet):
        return _make_pool(self.workers, self.services.settings, self.tenant,
                          self.repo.registry, ids.path, self._pg)

    def _scan(self, files: list[Source], ids: IdSet) -> int:
        total = 0
        for src in files:
            if src.kind == "ndjson" and self._pool is not None:
                n, todo = self._scan_parallel(src, ids)
            else:
                n = todo = 0
                for item in items(src, scan=True):
                    n += 1
                    if item.line > src.line:
                        todo += 1
                    if item.rtype and item.rid:
                        ids.add(item.rtype, item.rid)
                        ids.add_facts(item.rid, scan_facts(item.resource))
                    if item.full_url:
                        ids.add_url(item.full_url, f"{item.rtype}/{item.rid}")
            src.total = n
            if not src.done:
                total += todo
        ids.flush()
        # the stored Patients the import names by fødselsnummer … (fkj.repository.patients)
        ids.add_stored_persons(self.repo.find_patients)
        return total

    def _scan_parallel(self, src: Source, ids: IdSet) -> tuple[int, int]:
        """The scan of an NDJSON file with the JSON parsed in the worker processes."""
        pending: deque = deque()
        n = todo = 0

        def take(job) -> None:
            nonlocal n, todo
            first, res = job
            res = res.get()
            n += len(res)
            todo += sum(1 for k in range(len(res)) if first[k] > src.line)
            for key in res:
                if key is not None:
                    ids.add(key[0], key[1])
                    ids.add_facts(key[1], key[2])

        buf: list = []
        for entry in _ndjson_lines(src):
            buf.append(entry)
            if len(buf) >= SCAN_CHUNK:
                pending.append(([e[0] for e in buf], self._pool.apply_async(
                    work_scan, (src.path.name, buf))))
                buf = []
                if len(pending) > self.workers + 2:
                    take(pending.popleft())
        if buf:
            pending.append(([e[0] for e in buf], self._pool.apply_async(
                work_scan, (src.path.name, buf))))
        while pending:
            take(pending.popleft())
        return n, todo

    # -------------------------------------------------------------- pass 2
    def _chunks(self, files: list[Source], ids: IdSet, result: ImportResult):
        """(file, entries) of at most ``batch_size`` lines still to load, then (file, None)
        at the end of each file. Entries are raw NDJSON lines or parsed Bundle entries."""
        size = self.batch_size
        for src in files:
            if src.done:
                continue
            buf: list = []
            if src.kind == "ndjson":
                for n, raw in _ndjson_lines(src):
                    if n <= src.line:
                        result.skipped += 1
                        continue
                    buf.append((n, raw))
                    if len(buf) >= size:
                        yield src, buf
                        buf = []
            else:
                for item in _bundle_items(src, ids.url):
                    if item.line <= src.line:
                        result.skipped += 1
                        continue
                    buf.append(item)
                    if len(buf) >= size:
                        yield src, buf
                        buf = []
            if buf:
                yield src, buf
            yield src, None

    def _load(self, files: list[Source], ids: IdSet, result: ImportResult) -> None:
        """Workers prepare the next chunks while this process stores the current one; at most
        ``workers + 2`` chunks are in flight, so memory stays flat."""
        pending: deque = deque()
        depth = self.workers + 2 if self._pool is not None else 0
        state = _BatchState()
        for src, entries in self._chunks(files, ids, result):
            if entries is None:
                pending.append((src, None))
            elif self._pool is not None:
                pending.append((src, self._pool.apply_async(
                    work_prepare, (src.path.name, entries, now_us()))))
            else:
                pending.append((src, self._state.prepare(src.path.name, entries, now_us())))
            while len(pending) > depth:
                self._consume(pending.popleft(), state, result)
        while pending:
            self._consume(pending.popleft(), state, result)

    def _consume(self, job, st: "_BatchState", result: ImportResult) -> None:
        src, res = job
        if res is None:  # the end of the file
            self._commit(src, st, result, done=True)
            return
        if not isinstance(res, list):
            res = res.get()
        if st.src is not src:
            st.reset(src, src.line)
        size = self.batch_size
        for r in res:
            result.read += 1
            if r[0] == ERR:
                st.errors.append(ImportError_(
                    str(src.path), r[1], r[4], f"{r[2]}/{r[3]}" if r[2] and r[3] else None,
                    list(r[5] or []), r[6]))
            else:
                key = (r[2], r[3])
                if key in st.keys:  # the same resource twice in one batch: commit the first
                    self._commit(src, st, result)
                st.keys.add(key)
                st.batch.append(r)
            st.line = r[1]
            if len(st.batch) + len(st.errors) >= size:
                self._commit(src, st, result)

    def _commit(self, src: Source, st: "_BatchState", result: ImportResult,
                done: bool = False) -> None:
        """Hand the gathered batch to the pipeline (which stores it now or on a writer
        connection) and start the next one."""
        if st.src is not src:
            st.reset(src, src.line)
        if not st.batch and not st.errors and not done:
            return
        batch = _Batch(src, st.batch, st.errors, st.keys, st.first_line, st.line, done)
        st.reset(src, st.line)
        self._pipeline.put(batch, result)

    def _store(self, b: "_Batch", repo, turn: Callable[[], None]) -> int:
        """Store one batch in one transaction (its rows, audit and progress); returns the
        number stored. ``turn()`` returns when the batch before it has committed (raises if
        that one failed): called before the first step that must follow it."""
        if self.dry_run:
            with scope(self.services.engine, self.tenant) as conn:
                return len(self._store_batch(conn, repo, b.src, b.rows, b.errors, write=False))
        # no disk flush per batch: a batch and its progress row commit together, so one
        # lost in an operating-system crash is loaded again when the import is resumed; the
        # file's last commit flushes, and with it every earlier one
        with repo.transaction(flush=b.done):
            conn = repo._conn
            if self._pg:
                _pg_import_settings(conn)
            ops = self._store_batch(conn, repo, b.src, b.rows, b.errors, write=True, turn=turn)
            turn()
            self._audit_batch(conn, b.src, ops, b.first, b.line)
            self._commit_progress(conn, b.src, b.after, b.line, len(ops), len(b.errors),
                                  b.done)
        return len(ops)

    def _finish(self, b: "_Batch", good: int, result: ImportResult) -> None:
        """After a batch committed (in order): the report, the counts, the progress bar."""
        # written after the commit: a crash in between loses report lines, never duplicates
        self.report.write(b.errors)
        src = b.src
        src.line, src.done = b.line, b.done
        src.loaded += good
        src.failed += len(b.errors)
        result.loaded += good
        result.failed += len(b.errors)
        if self._growth is not None:
            self._growth.added(good)
        self.on_progress(len(b.rows) + len(b.errors))

    def _audit_batch(self, conn, src: Source, ops: list, first: int, last: int) -> None:
        """The batch's AuditEvents, in its transaction: a change that commits is audited,
        one that rolls back leaves no record (``FKJ_AUDIT=0`` switches the audit log off, as
        for the server)."""
        from fkj.security.audit import append_in_transaction, import_batch_events
        from fkj.security.audit.wiring import audit_enabled
        if not ops or not audit_enabled():
            return
        created = [(f"{op.type}/{op.id}", op.content) for op in ops if op.action == "create"]
        updated = [(f"{op.type}/{op.id}", op.content) for op in ops if op.action != "create"]
        append_in_transaction(conn, self.tenant, import_batch_events(
            self.repo.principal, created, updated,
            f"fkj import {src.path.name} {'lines' if src.kind == 'ndjson' else 'entries'} "
            f"{first}-{last}"))

    def _store_batch(self, conn, repo, src: Source, batch: list, errors: list[ImportError_],
                     *, write: bool, turn: Callable[[], None] | None = None) -> list:
        """Check what needs the database and (if ``write``) store the good ones: the
        writes (:class:`Write`)."""
        from fkj.store import resources as sql

        hooks = self.services.hooks.authorize
        if hooks:
            for r in batch:
                content = r[5]
                if isinstance(content, bytes):
                    content = content.replace(b"\\\\", b"\\")
                repo.authorize("update", r[2], orjson.loads(content))
        current = self._currents(conn, batch)
        unknown = {(t, i) for r in batch for _, t, i in r[6]}
        if unknown:
            unknown -= sql.existing_ids(conn, self.tenant, unknown)
        ops = []
        for r in batch:
            if r[6] and unknown:
                bad = next(((p, t, i) for p, t, i in r[6] if (t, i) in unknown), None)
                if bad is not None:
                    errors.append(ImportError_(
                        str(src.path), r[1],
                        f"reference {bad[1]}/{bad[2]} resolves neither to a resource of the "
                        "import nor to one stored in this municipality",
                        f"{r[2]}/{r[3]}", [bad[0]], "processing"))
                    continue
            ops.append(Write(r[2], r[3], r[4], r[5], r[7], current.get((r[2], r[3]))))
        if write:
            def conflict(op):
                raise FatalImportError(
                    f"{op.type}/{op.id} was changed by another writer during the import")
            write_rows(conn, self.tenant, repo.principal.display, ops,
                       {k: v[1] for k, v in current.items()}, conflict, turn)
        return ops

    def _currents(self, conn, batch: list) -> dict[tuple[str, str], tuple[int, int]]:
        by_type: dict[str, list[str]] = {}
        for r in batch:
            by_type.setdefault(r[2], []).append(r[3])
        out = {}
        c = resource.c
        for t, rids in by_type.items():
            for start in range(0, len(rids), 1000):
                for row in conn.execute(select(c.id, c.rid, c.version).where(and_(
                        c.tenant == self.tenant, c.type == t,
                        c.id.in_(rids[start:start + 1000])))):
                    out[(t, row.id)] = (row.rid, row.version)
        return out


def _pg_import_settings(conn) -> None:
    """Settings of an import transaction on PostgreSQL: every lookup of the import (stored
    versions by id, references by id, progress) is a key lookup, and ``enable_seqscan = off``
    and custom plans keep it one. The tables grow from nothing to millions of rows during an
    import, faster than autovacuum (if it runs at all) renews their statistics, and with the
    statistics of a small table PostgreSQL chose sequential scans — the lookup of a batch's
    stored versions took 0.3 s at 600,000 resources, and the import slowed to a third. (It
    then chose a bitmap scan of every row of the type instead: the import also analyses
    ``resource`` as it grows, see fkj.store.maintenance.GrowthAnalyzer.)"""
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")


class _BatchState:
    """The batch being gathered for the next transaction."""

    def __init__(self):
        self.src: Source | None = None
        self.reset(None, 0)

    def reset(self, src: Source | None, line: int) -> None:
        """Start a batch of ``src`` after its line ``line``."""
        self.src = src
        self.batch: list = []
        self.keys: set[tuple[str, str]] = set()
        self.errors: list[ImportError_] = []
        self.line = line
        #: the first line (NDJSON) or entry (Bundle) of the batch
        self.first_line = line + 1


@dataclass(eq=False)
class _Batch:
    """A batch handed to the pipeline: ``after`` is the file's committed line it continues
    from (set by the pipeline), ``line`` the last line it holds."""

    src: Source
    rows: list
    errors: list[ImportError_]
    keys: set[tuple[str, str]]
    first: int
    line: int
    done: bool
    after: int = 0
    future: Any = None


class _Pipeline:
    """Batches stored by up to ``writers`` database connections at once, committed in order.

    On PostgreSQL one import backend is CPU-bound (B-tree inserts of the index rows); with two
    connections the second batch's resource and index rows go in while the first one commits.
    The order of commits stays the file order, which resumption relies on: a batch takes the
    tenant's event sequence, appends its audit and moves the file's committed line only after
    the batch before it committed (``turn``), and rolls back if that one failed. A batch that
    shares a resource with one in flight waits until that one is done (its stored version is
    needed). On SQLite, which has one writer anyway, and with ``writers == 1``: each batch in
    turn, in this thread (two SQLite writers would deadlock: the second holds the write lock
    from BEGIN IMMEDIATE while it waits for its turn)."""

    def __init__(self, importer: "Importer", writers: int):
        import threading
        self.importer = importer
        self.writers = max(1, writers) if importer._pg else 1
        self.inflight: deque[_Batch] = deque()
        self.sent: dict[str, int] = {}  # file key → last line handed to a writer
        self.executor = None
        self._local = threading.local()
        if self.writers > 1 and not importer.dry_run:
            from concurrent.futures import ThreadPoolExecutor
            self.executor = ThreadPoolExecutor(self.writers, thread_name_prefix="fkj-import")

    def put(self, b: _Batch, result: ImportResult) -> None:
        b.after = self.sent.get(b.src.key, b.src.line)
        self.sent[b.src.key] = b.line
        imp = self.importer
        if self.executor is None:
            imp._finish(b, imp._store(b, imp.repo, lambda: None), result)
            return
        if any(b.keys & f.keys for f in self.inflight):
            self.drain(result)
        while len(self.inflight) >= self.writers:
            self._finish_oldest(result)
        prev = self.inflight[-1].future if self.inflight else None
        b.future = self.executor.submit(self._run, b, prev)
        self.inflight.append(b)

    def _run(self, b: _Batch, prev) -> int:
        def turn() -> None:
            if prev is not None:
                prev.result()  # an earlier batch failed: this one rolls back too
        return self.importer._store(b, self._repo(), turn)

    def _repo(self):
        repo = getattr(self._local, "repo", None)
        if repo is None:
            from fkj.repository.repository import Repository
            imp = self.importer
            repo = self._local.repo = Repository(imp.services, imp.repo.principal, imp.tenant)
        return repo

    def _finish_oldest(self, result: ImportResult) -> None:
        b = self.inflight.popleft()
        self.importer._finish(b, b.future.result(), result)

    def drain(self, result: ImportResult) -> None:
        while self.inflight:
            self._finish_oldest(result)

    def close(self, result: ImportResult) -> None:
        """At the end, also after a failure: count what committed, wait for the rest."""
        try:
            while self.inflight:
                b = self.inflight[0]
                try:
                    good = b.future.result()
                except Exception:  # noqa: BLE001 - already reported (or this run failed)
                    break
                self.inflight.popleft()
                self.importer._finish(b, good, result)
        finally:
            self.inflight.clear()
            if self.executor is not None:
                self.executor.shutdown(wait=True)


def default_writers() -> int:
    """Writer connections of an import on PostgreSQL (``FKJ_IMPORT_WRITERS``, default 2);
    SQLite always has one (:class:`_Pipeline`)."""
    return max(1, int(os.environ.get("FKJ_IMPORT_WRITERS", "2")))


def default_workers() -> int:
    """Worker processes for validation and indexing: one per core, at most 4
    (``FKJ_IMPORT_WORKERS`` overrides; 0 = none)."""
    env = os.environ.get("FKJ_IMPORT_WORKERS")
    if env is not None and env.strip().isdigit():
        return int(env)
    return max(0, min(4, (os.cpu_count() or 1)))


def _make_pool(workers: int, settings, tenant: str, registry, ids_path: str, pg: bool):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    return ctx.Pool(workers, initializer=init_worker,
                    initargs=(settings, tenant, registry, ids_path, pg))


def import_paths(engine, settings, tenant: str, paths: list[str | Path], **options) -> ImportResult:
    """Import files/directories into ``tenant``; see :class:`Importer` for the options."""
    return Importer(engine, settings, tenant, **options).run(paths)


def default_report_dir(tenant: str, paths: list[str | Path]) -> Path:
    name = Path(paths[0]).resolve().name if paths else "import"
    return Path("fkj-data") / "imports" / f"{tenant}-{name}"


def main(argv: list[str] | None = None) -> None:
    """``python -m fkj.bulk.importer PATH… --tenant T`` (the same as ``fkj import``); exits
    with the import's status (0, 1 or 2)."""
    import typer

    from fkj.cli.bulk import import_command

    app = typer.Typer(add_completion=False)
    app.command()(import_command)
    app(argv)


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    main()
