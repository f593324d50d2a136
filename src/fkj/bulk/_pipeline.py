"""The import's per-resource work, run in worker processes (or in the importer itself).

A worker turns a chunk of input lines into rows ready to store: it parses the JSON, assigns
ids, rewrites ``urn:`` references, validates and indexes through :meth:`Repository.prepare`,
checks references against the import set (the scan's SQLite file, opened read-only) and
serialises the rows. For PostgreSQL the rows are ``COPY`` text (index rows carry a one-byte
placeholder where the row id goes, since row ids are allocated in the writing transaction);
for SQLite they are tuples for ``executemany``. The importer's main process then only checks
what needs the database (existing versions, references outside the import) and writes.

A result per input line is either
``(ERR, line, rtype, rid, diagnostics, expression, code)`` or
``(OK, line, rtype, rid, last_updated, content, unknown_refs, index)``:
``unknown_refs`` are the ``(path, type, id)`` references not in the import set (to check against
the tenant's stored resources), ``index`` maps an index table to its rows (COPY bytes or
tuples).
"""

from __future__ import annotations

import os
import re
import sqlite3
from typing import Any

from fkj.errors import FhirError
from fkj.search.keys import VALUE_COLUMNS as _VALUE_TABLES
from fkj.search.keys import stored_rows

ERR = 0
OK = 1
#: stands for the row id in COPY lines built by a worker (escaped wherever it occurs in data)
RID = b"\x01"

#: a reference to a urn: (rewritten to Type/id when the import set maps it)
_URN_REF = re.compile(rb'"reference"\s*:\s*"urn:')
_FLOAT_SPECIAL = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}


def _esc(s: str) -> str:
    """A value in PostgreSQL COPY text format."""
    if "\\" in s:
        s = s.replace("\\", "\\\\")
    if "\t" in s:
        s = s.replace("\t", "\\t")
    if "\n" in s:
        s = s.replace("\n", "\\n")
    if "\r" in s:
        s = s.replace("\r", "\\r")
    if "\x01" in s:
        s = s.replace("\x01", "\\x01")
    return s


def _field(v: Any) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, str):
        return _esc(v)
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, float):
        r = repr(v)
        return _FLOAT_SPECIAL.get(r, r)
    if isinstance(v, int):
        return str(v)
    return _esc(str(v))


def copy_line(values) -> bytes:
    return ("\t".join([_field(v) for v in values]) + "\n").encode()


class WorkState:
    """What one process needs to prepare resources: a repository (registry fixed for the
    whole import) and read access to the import's id set."""

    def __init__(self, repo, tenant: str, ids_path: str | None, pg: bool):
        self.repo = repo
        self.tenant = tenant
        self.pg = pg
        self.ids_path = ids_path
        self._db: sqlite3.Connection | None = None
        self._known: dict[tuple[str, str], bool] = {}
        self._urls: dict[str, str | None] = {}
        self.head = _esc(tenant) + "\t\x01\t"
        # references naming a patient by fødselsnummer … resolve against the import's index
        # (its own Patients and the stored ones it names): a worker has no database
        repo.person_lookup = self.find_patients

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -------------------------------------------------------------- the id set (read-only)
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self.ids_path}?mode=ro", uri=True,
                                       check_same_thread=False)
            self._db.execute("PRAGMA cache_size=-16384")
        return self._db

    def in_import(self, key: tuple[str, str]) -> bool:
        hit = self._known.get(key)
        if hit is None:
            if self.ids_path is None:
                return False
            hit = self._conn().execute("SELECT 1 FROM ids WHERE type = ? AND id = ?",
                                       key).fetchone() is not None
            if len(self._known) > 100000:
                self._known.clear()
            self._known[key] = hit
        return hit

    def find_patients(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """:meth:`fkj.repository.repository.Repository.find_patients` over the import's
        index of persons (filled by the scan)."""
        out: dict[tuple[str, str], list[str]] = {}
        if self.ids_path is None:
            return out
        for kind, value in wanted:
            rows = self._conn().execute("SELECT id FROM persons WHERE kind = ? AND value = ?",
                                        (kind, value)).fetchall()
            if rows:
                out[(kind, value)] = [r[0] for r in rows]
        return out

    def url(self, url: str) -> str | None:
        if url in self._urls:
            return self._urls[url]
        if self.ids_path is None:
            return None
        row = self._conn().execute("SELECT ref FROM urls WHERE url = ?", (url,)).fetchone()
        ref = row[0] if row else None
        if len(self._urls) > 100000:
            self._urls.clear()
        self._urls[url] = ref
        return ref

    # -------------------------------------------------------------- the work
    def scan(self, src_name: str, lines: list[tuple[int, bytes]]) -> list:
        """(rtype, rid, facts) of each line (None for a line that is not a resource); facts:
        :func:`fkj.repository.patients.scan_facts`."""
        from fkj.bulk.reader import _parse_line_name
        from fkj.repository.patients import scan_facts
        out = []
        for n, raw in lines:
            item = _parse_line_name(src_name, n, raw)
            out.append((item.rtype, item.rid, scan_facts(item.resource))
                       if item.rtype and item.rid else None)
        return out

    def prepare(self, src_name: str, entries: list, ts: int) -> list:
        """Results (see the module docstring) for ``entries``: ``(line, raw bytes)`` of NDJSON
        lines or parsed Items (Bundle entries, already rewritten)."""
        from fkj.bulk.reader import Item, _parse_line_name, _rewrite

        repo = self.repo
        pg = self.pg
        url = self.url
        out: list = []
        for entry in entries:
            if isinstance(entry, Item):
                item = entry
            else:
                n, raw = entry
                item = _parse_line_name(src_name, n, raw)
                if item.resource is not None and b"urn:" in raw and _URN_REF.search(raw):
                    _rewrite(item.resource, item.rtype, {}, url)
            if item.error is not None or item.rtype is None or item.rid is None:
                out.append((ERR, item.line, item.rtype, item.rid, item.error or "no id", [],
                            "invalid"))
                continue
            if (why := not_importable(item.rtype)) is not None:  # fkj.events: Subscription
                out.append((ERR, item.line, item.rtype, item.rid, why, [], "not-supported"))
                continue
            try:
                op = repo.prepare(item.resource, rtype=None, rid=item.rid, version=1,
                                  method="PUT", ts=ts)
            except FhirError as e:
                issue = e.issues[0] if e.issues else None
                out.append((ERR, item.line, item.rtype, item.rid, e.diagnostics,
                            list(issue.expression) if issue else [],
                            issue.code if issue else "invalid"))
                continue
            if op.type != item.rtype:
                out.append((ERR, item.line, item.rtype, item.rid, "resourceType changed", [],
                            "invalid"))
                continue
            unknown = [r for r in op.references if not self.in_import((r[1], r[2]))]
            index = self._index(op) if pg else self._index_tuples(op)
            content = _esc(op.content).encode() if pg else op.content
            out.append((OK, item.line, item.rtype, item.rid, op.last_updated, content, unknown,
                        index))
        return out

    def _index_tuples(self, op) -> dict[str, list[tuple]]:
        out = {}
        for table, rows in op.index.items():
            if rows and table in _VALUE_TABLES:
                out[table] = stored_rows(table, rows)
        return out

    def _index(self, op) -> dict[str, bytes]:
        head = self.head + _esc(op.type) + "\t"
        # Index values come from the resource's strings: if its JSON has no backslash, none
        # of them holds a character COPY must escape (\\, tab, newline, CR, \x01 are all
        # escaped in JSON), and without "None" a field "None" can only be a NULL
        fast = "\\" not in op.content and "None" not in op.content
        sep = "\n" + head
        out = {}
        for table, rows in op.index.items():
            if rows and table in _VALUE_TABLES:
                rows = stored_rows(table, rows)
                if fast:
                    text = head + sep.join(["\t".join(map(str, row)) for row in rows]) + "\n"
                    if "None" in text:
                        text = text.replace("\tNone", "\t\\N")
                    out[table] = text.encode()
                else:
                    out[table] = "".join([head + "\t".join([_field(v) for v in row]) + "\n"
                                          for row in rows]).encode()
        return out


from fkj.events.subscriptions import not_importable  # noqa: E402

# ---------------------------------------------------------------------------- processes
_state: WorkState | None = None


def fixed_registry_repo(services, principal, tenant: str, registry):
    """A Repository whose search parameters are ``registry`` (no database needed)."""
    from fkj.repository.repository import Repository

    class _Repo(Repository):
        @property
        def registry(self):
            return registry

    return _Repo(services, principal, tenant)


def init_worker(settings, tenant: str, registry, ids_path: str | None, pg: bool) -> None:
    """Pool initializer: die with the parent (SIGKILL of the import kills its workers too)."""
    global _state
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(0)
    except OSError:  # pragma: no cover - not Linux
        pass
    from fkj.repository.services import Services
    from fkj.types import Principal

    services = Services(engine=None, settings=settings, indexing=settings.indexing)  # type: ignore[arg-type]
    services.extras["registry"] = registry
    repo = fixed_registry_repo(services, Principal.system(tenant, subject="fkj-import"), tenant,
                               registry)
    _state = WorkState(repo, tenant, ids_path, pg)


def work_prepare(src_name: str, entries: list, ts: int) -> list:
    assert _state is not None
    return _state.prepare(src_name, entries, ts)


def work_scan(src_name: str, lines: list) -> list:
    assert _state is not None
    return _state.scan(src_name, lines)
