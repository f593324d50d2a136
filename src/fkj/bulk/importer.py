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

import gzip
import hashlib
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, insert, select, update

from fkj.bulk.tables import bulk_import_file
from fkj.errors import FhirError
from fkj.model.references import iter_references, split_relative
from fkj.store.backend import now_us, scope
from fkj.store.schema import resource

#: namespace of the deterministic ids given to Bundle entries without one
ID_NAMESPACE = uuid.UUID("5b0f3c1e-6a43-4d0e-9f36-6b1f4a0c2d71")
BUNDLE_TYPES = ("batch", "transaction", "collection", "searchset")
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
JSON_SUFFIXES = (".json", ".json.gz")
DEFAULT_BATCH = 1000
HEAD_BYTES = 1 << 20


class FatalImportError(Exception):
    """The import cannot proceed at all (exit status 2)."""


# ---------------------------------------------------------------------------- sources
@dataclass
class Source:
    path: Path
    kind: str  # ndjson | bundle
    size: int
    head_sha: str
    key: str
    #: progress from the job table
    line: int = 0
    loaded: int = 0
    failed: int = 0
    done: bool = False
    #: lines (or entries) found in the scan
    total: int = 0


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def discover(paths: list[str | Path]) -> list[Source]:
    """The input files: each path is a file or a directory (searched recursively)."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(f for f in sorted(p.rglob("*")) if f.is_file() and
                         f.name.endswith(NDJSON_SUFFIXES + JSON_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise FatalImportError(f"{p} does not exist")
    out = []
    for f in files:
        f = f.resolve()
        st = f.stat()
        with open(f, "rb") as fh:
            head_sha = hashlib.sha256(fh.read(HEAD_BYTES)).hexdigest()
        key = hashlib.sha256(f"{f}|{st.st_size}|{head_sha}".encode()).hexdigest()
        kind = "bundle" if f.name.endswith(JSON_SUFFIXES) else "ndjson"
        out.append(Source(f, kind, st.st_size, head_sha, key))
    return out


@dataclass
class Item:
    """One resource of the input (or a line that could not be read)."""

    line: int
    rtype: str | None = None
    rid: str | None = None
    resource: dict | None = None
    error: str | None = None
    #: Bundle entries: the entry's fullUrl (mapped to Type/id for references in other files)
    full_url: str | None = None


def _ndjson_lines(src: Source) -> Iterator[tuple[int, bytes]]:
    with _open(src.path) as fh:
        for n, raw in enumerate(fh, 1):
            if raw.strip():
                yield n, raw


def _line_id(src: Source, n: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{src.path.name}|line {n}"))


def _parse_line(src: Source, n: int, raw: bytes) -> Item:
    try:
        res = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return Item(n, error=f"the line is not valid JSON: {e}")
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        return Item(n, error="the line is not a FHIR resource (no resourceType)")
    rid = res.get("id")
    if rid is None:
        rid = _line_id(src, n)
    elif not isinstance(rid, str):
        return Item(n, res["resourceType"], None, res, "id must be a string")
    return Item(n, res["resourceType"], rid, res)


def _bundle_items(src: Source, urn_lookup: Callable[[str], str | None] | None = None
                  ) -> Iterator[Item]:
    """Entries of a Bundle file (entry number 1-based), ids assigned, references rewritten."""
    try:
        with _open(src.path) as fh:
            doc = orjson.loads(fh.read())
    except (orjson.JSONDecodeError, OSError, EOFError) as e:
        yield Item(1, error=f"the file is not valid JSON: {e}")
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        yield Item(1, error="the file is not a FHIR resource (no resourceType)")
        return
    if doc["resourceType"] != "Bundle" or doc.get("type") not in BUNDLE_TYPES:
        # a single resource in a .json file
        yield Item(1, doc["resourceType"], doc.get("id") or _line_id(src, 1), doc)
        return
    entries = doc.get("entry") or []
    if not isinstance(entries, list):
        yield Item(1, error="Bundle.entry is not a list")
        return
    mapping: dict[str, str] = {}
    plan: list[Item] = []
    for i, e in enumerate(entries):
        n = i + 1
        if not isinstance(e, dict):
            plan.append(Item(n, error=f"Bundle.entry[{i}] is not an object"))
            continue
        res = e.get("resource")
        method = ((e.get("request") or {}).get("method") or "").upper()
        if method == "DELETE":
            plan.append(Item(n, error=f"Bundle.entry[{i}]: DELETE entries are not imported"))
            continue
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            plan.append(Item(n, error=f"Bundle.entry[{i}] has no resource"))
            continue
        rtype = res["resourceType"]
        rid = res.get("id")
        full_url = e.get("fullUrl")
        if not rid and method == "PUT":
            url = (e.get("request") or {}).get("url") or ""
            parts = split_relative(url.split("?")[0]) if "?" not in url else None
            if parts and parts[0] == rtype:
                rid = parts[1]
        if not rid:
            seed = full_url if isinstance(full_url, str) and full_url else f"#entry {n}"
            rid = str(uuid.uuid5(ID_NAMESPACE, f"{src.path.name}|{seed}"))
        if not isinstance(rid, str):
            plan.append(Item(n, rtype, None, res, "id must be a string"))
            continue
        if isinstance(full_url, str) and full_url:
            mapping[full_url] = f"{rtype}/{rid}"
        else:
            full_url = None
        plan.append(Item(n, rtype, rid, res, full_url=full_url))
    del doc, entries
    for item in plan:
        if item.resource is not None and item.error is None:
            _rewrite(item.resource, item.rtype, mapping, urn_lookup)
        yield item


def _rewrite(res: dict, rtype: str | None, mapping: dict[str, str],
             urn_lookup: Callable[[str], str | None] | None) -> None:
    for _, obj in iter_references(res, rtype or "Resource"):
        ref = obj["reference"]
        new = mapping.get(ref)
        if new is None and urn_lookup is not None and ref.startswith("urn:"):
            new = urn_lookup(ref)
        if new is not None:
            obj["reference"] = new


def items(src: Source, urn_lookup: Callable[[str], str | None] | None = None,
          scan: bool = False) -> Iterator[Item]:
    if src.kind == "bundle":
        yield from _bundle_items(src, urn_lookup)
        return
    for n, raw in _ndjson_lines(src):
        item = _parse_line(src, n, raw)
        if not scan and item.resource is not None and urn_lookup is not None and b"urn:" in raw:
            _rewrite(item.resource, item.rtype, {}, urn_lookup)
        yield item


# ---------------------------------------------------------------------------- the id set
class IdSet:
    """The (type, id) set of the import and its fullUrl map, in a temporary SQLite file."""

    def __init__(self, directory: str | None = None):
        fd, self.path = tempfile.mkstemp(prefix="fkj-import-", suffix=".sqlite", dir=directory)
        os.close(fd)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-32768")
        self.db.execute("CREATE TABLE ids (type TEXT, id TEXT, PRIMARY KEY (type, id)) "
                        "WITHOUT ROWID")
        self.db.execute("CREATE TABLE urls (url TEXT PRIMARY KEY, ref TEXT) WITHOUT ROWID")
        self._pending: list[tuple[str, str]] = []
        self._cache: dict[tuple[str, str], bool] = {}

    def add(self, rtype: str, rid: str) -> None:
        self._pending.append((rtype, rid))
        if len(self._pending) >= 10000:
            self.flush()

    def add_url(self, url: str, ref: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO urls VALUES (?, ?)", (url, ref))

    def flush(self) -> None:
        if self._pending:
            self.db.executemany("INSERT OR IGNORE INTO ids VALUES (?, ?)", self._pending)
            self._pending.clear()
        self.db.commit()

    def __contains__(self, key: tuple[str, str]) -> bool:
        hit = self._cache.get(key)
        if hit is None:
            hit = self.db.execute("SELECT 1 FROM ids WHERE type = ? AND id = ?", key).fetchone() \
                is not None
            if len(self._cache) > 50000:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def url(self, url: str) -> str | None:
        row = self.db.execute("SELECT ref FROM urls WHERE url = ?", (url,)).fetchone()
        return row[0] if row else None

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM ids").fetchone()[0]

    def close(self) -> None:
        self.db.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


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
                 subject: str = "fkj-import", registry=None, workers: int | None = None):
        from fkj.repository.repository import Repository
        from fkj.repository.services import Services
        from fkj.search.registry import default_registry
        from fkj.types import Principal

        self.services = Services(engine=engine, settings=settings, indexing=settings.indexing)
        self.services.extras.setdefault("registry", registry or default_registry())
        self.tenant = tenant
        self.repo = Repository(self.services, Principal.system(tenant, subject=subject), tenant)
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.report = Report(report_dir)
        self.report_dir = report_dir
        self.on_progress = on_progress or (lambda n: None)
        self.on_total = on_total or (lambda n: None)
        #: processes validating and indexing in parallel (0: in this process)
        self.workers = default_workers() if workers is None else workers
        self._pool = None

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
            total = self._scan(result.files, ids)
            if self.workers > 0 and total >= 2 * self.batch_size:
                self._pool = _make_pool(self.workers, self.services.settings, self.tenant)
            self.on_total(total)
            for src in result.files:
                if not src.done:
                    self._load_file(src, ids, result)
        except FatalImportError as e:
            result.fatal = str(e)
        except FhirError as e:
            result.fatal = e.diagnostics
        except OSError as e:
            result.fatal = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - database down, etc.: report, exit 2
            result.fatal = f"{type(e).__name__}: {e}"
        finally:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None
            if ids is not None:
                ids.close()
            self.report.close()
        if self.report_dir is not None:
            (self.report_dir / "summary.txt").write_text(result.summary() + "\n")
        return result

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

    def _commit_progress(self, conn, src: Source, line: int, loaded: int, failed: int,
                         done: bool) -> None:
        t = bulk_import_file.c
        res = conn.execute(update(bulk_import_file).where(
            t.tenant == self.tenant, t.file_key == src.key, t.line == src.line).values(
            line=line, loaded=t.loaded + loaded, failed=t.failed + failed, done=done,
            updated=now_us()))
        if res.rowcount != 1:
            raise FatalImportError(f"{src.path} is being imported by another process")

    # -------------------------------------------------------------- pass 1
    def _scan(self, files: list[Source], ids: IdSet) -> int:
        total = 0
        for src in files:
            n = todo = 0
            for item in items(src, scan=True):
                n += 1
                if item.line > src.line:
                    todo += 1
                if item.rtype and item.rid:
                    ids.add(item.rtype, item.rid)
                if item.full_url:
                    ids.add_url(item.full_url, f"{item.rtype}/{item.rid}")
            src.total = n
            if not src.done:
                total += todo
        ids.flush()
        return total

    # -------------------------------------------------------------- pass 2
    def _load_file(self, src: Source, ids: IdSet, result: ImportResult) -> None:
        batch: list[Item] = []
        keys: set[tuple[str, str]] = set()
        last_line = src.line
        pending_errors: list[ImportError_] = []
        skipped_before = 0
        for item in items(src, urn_lookup=ids.url):
            if item.line <= src.line:
                skipped_before += 1
                continue
            result.read += 1
            if item.error is not None or item.rtype is None or item.rid is None:
                pending_errors.append(self._error(src, item, item.error or "no id"))
            else:
                key = (item.rtype, item.rid)
                if key in keys:  # the same resource twice in one batch: commit the first
                    self._commit(src, batch, pending_errors, last_line, ids, result)
                    batch, keys, pending_errors = [], set(), []
                    last_line = src.line
                keys.add(key)
                batch.append(item)
            last_line = item.line
            if len(batch) + len(pending_errors) >= self.batch_size:
                self._commit(src, batch, pending_errors, last_line, ids, result)
                batch, keys, pending_errors = [], set(), []
        self._commit(src, batch, pending_errors, last_line, ids, result, done=True)
        result.skipped += skipped_before

    def _error(self, src: Source, item: Item, reason: str, expression=None,
               code: str = "invalid") -> ImportError_:
        ref = f"{item.rtype}/{item.rid}" if item.rtype and item.rid else None
        return ImportError_(str(src.path), item.line, reason, ref, list(expression or []), code)

    def _commit(self, src: Source, batch: list[Item], errors: list[ImportError_], line: int,
                ids: IdSet, result: ImportResult, done: bool = False) -> None:
        if not batch and not errors and not done:
            return
        repo = self.repo
        if self.dry_run:
            with scope(self.services.engine, self.tenant) as conn:
                good = self._prepare_batch(conn, src, batch, errors, ids, write=False)
        else:
            with repo.transaction():
                conn = repo._conn
                good = self._prepare_batch(conn, src, batch, errors, ids, write=True)
                self._commit_progress(conn, src, line, len(good), len(errors), done)
        # written after the commit: a crash in between loses report lines, never duplicates
        self.report.write(errors)
        src.line, src.done = line, done
        src.loaded += len(good)
        src.failed += len(errors)
        result.loaded += len(good)
        result.failed += len(errors)
        self.on_progress(len(batch) + len(errors))

    def _prepare_batch(self, conn, src: Source, batch: list[Item], errors: list[ImportError_],
                       ids: IdSet, *, write: bool) -> list:
        from fkj.store import resources as sql

        repo = self.repo
        current = self._currents(conn, batch)
        prepared = []
        unknown: set[tuple[str, str]] = set()
        ts = now_us()
        for item in batch:
            repo.authorize("update", item.rtype, item.resource)
        for item, op in zip(batch, self._prepare_all(batch, ts)):
            cur = current.get((item.rtype, item.rid))
            if isinstance(op, tuple):  # (diagnostics, expression, code)
                errors.append(self._error(src, item, op[0], op[1], op[2]))
                continue
            if cur is not None:
                op.version = cur[1] + 1
                op.content = op.content.replace('"versionId":"1"',
                                                f'"versionId":"{op.version}"', 1)
            if op.type != item.rtype:
                errors.append(self._error(src, item, "resourceType changed"))
                continue
            for _, t, i in op.references:
                if (t, i) not in ids:
                    unknown.add((t, i))
            prepared.append((item, op, cur))
        if unknown:
            unknown -= sql.existing_ids(conn, self.tenant, unknown)
        good = []
        for item, op, cur in prepared:
            bad = next(((p, t, i) for p, t, i in op.references if (t, i) in unknown), None)
            if bad is not None:
                errors.append(self._error(
                    src, item, f"reference {bad[1]}/{bad[2]} resolves neither to a resource of "
                    "the import nor to one stored in this municipality", [bad[0]], "processing"))
                continue
            op.references = []  # checked above, against the import set as well
            good.append(op)
        if write:
            for op in good:
                key = (op.type, op.id)
                cur = current.get(key)
                if cur is not None:
                    op.rid, op.action = cur[0], "update"
                    if not sql.update_current(conn, cur[0], cur[1], {
                            "version": op.version, "last_updated": op.last_updated,
                            "deleted": False, "content": op.content}):
                        raise FatalImportError(
                            f"{op.type}/{op.id} was changed by another writer during the import")
                repo._uow.add(op)  # type: ignore[union-attr]
        return good

    def _prepare_all(self, batch: list[Item], ts: int) -> list:
        jobs = [(item.resource, item.rid) for item in batch]
        if self._pool is None or len(jobs) < 64:
            return _prepare_chunk(jobs, ts, self.repo)
        n = max(1, -(-len(jobs) // (self.workers * 2)))
        chunks = [jobs[i:i + n] for i in range(0, len(jobs), n)]
        out: list = []
        for part in self._pool.starmap(_prepare_chunk, [(c, ts) for c in chunks]):
            out.extend(part)
        return out

    def _currents(self, conn, batch: list[Item]) -> dict[tuple[str, str], tuple[int, int]]:
        by_type: dict[str, list[str]] = {}
        for item in batch:
            by_type.setdefault(item.rtype, []).append(item.rid)  # type: ignore[arg-type]
        out = {}
        c = resource.c
        for t, rids in by_type.items():
            for start in range(0, len(rids), 1000):
                for row in conn.execute(select(c.id, c.rid, c.version).where(and_(
                        c.tenant == self.tenant, c.type == t,
                        c.id.in_(rids[start:start + 1000])))):
                    out[(t, row.id)] = (row.rid, row.version)
        return out


def default_workers() -> int:
    """Worker processes for validation and indexing: one per core beyond the first, at most 4
    (``FKJ_IMPORT_WORKERS`` overrides; 0 = none)."""
    env = os.environ.get("FKJ_IMPORT_WORKERS")
    if env is not None and env.strip().isdigit():
        return int(env)
    return max(0, min(4, (os.cpu_count() or 1)))


_worker_repo = None


def _init_worker(settings, tenant: str) -> None:
    """Pool initializer: die with the parent (SIGKILL of the import kills its workers too)."""
    global _worker_repo
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(0)
    except OSError:  # pragma: no cover - not Linux
        pass
    from fkj.repository.repository import Repository
    from fkj.repository.services import Services
    from fkj.search.registry import default_registry
    from fkj.types import Principal

    services = Services(engine=None, settings=settings, indexing=settings.indexing)  # type: ignore[arg-type]
    services.extras["registry"] = default_registry()
    _worker_repo = Repository(services, Principal.system(tenant, subject="fkj-import"), tenant)


def _prepare_chunk(jobs: list[tuple[dict, str]], ts: int, repo=None) -> list:
    """Validate and index resources at version 1: a Prepared, or (diagnostics, expression,
    code) for a rejected one. Runs in a worker process or in the importer itself."""
    repo = repo or _worker_repo
    out: list = []
    for res, rid in jobs:
        try:
            out.append(repo.prepare(res, rtype=None, rid=rid, version=1, method="PUT", ts=ts))
        except FhirError as e:
            issue = e.issues[0] if e.issues else None
            out.append((e.diagnostics, list(issue.expression) if issue else [],
                        issue.code if issue else "invalid"))
    return out


def _make_pool(workers: int, settings, tenant: str):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    return ctx.Pool(workers, initializer=_init_worker, initargs=(settings, tenant))


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
