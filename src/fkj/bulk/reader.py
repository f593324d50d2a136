"""Reading the input of ``fkj import``: the files (:func:`discover`), their resources as
:class:`Item` s — NDJSON line by line, Bundle files entry by entry through a streaming JSON
parser (ijson), so no file is ever held whole — and the import's (type, id) set and fullUrl
map (:class:`IdSet`, a temporary SQLite file, so memory stays flat for any size)."""

from __future__ import annotations

import gzip
import hashlib
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ijson
import orjson

from fkj.model.references import iter_references, split_relative

#: namespace of the deterministic ids given to Bundle entries without one
ID_NAMESPACE = uuid.UUID("5b0f3c1e-6a43-4d0e-9f36-6b1f4a0c2d71")
BUNDLE_TYPES = ("batch", "transaction", "collection", "searchset")
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
JSON_SUFFIXES = (".json", ".json.gz")
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
    return _line_id_name(src.path.name, n)


def _line_id_name(name: str, n: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{name}|line {n}"))


def _parse_line(src: Source, n: int, raw: bytes) -> Item:
    return _parse_line_name(src.path.name, n, raw)


def _parse_line_name(name: str, n: int, raw: bytes) -> Item:
    try:
        res = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return Item(n, error=f"the line is not valid JSON: {e}")
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        return Item(n, error="the line is not a FHIR resource (no resourceType)")
    rid = res.get("id")
    if rid is None:
        rid = _line_id_name(name, n)
    elif not isinstance(rid, str):
        return Item(n, res["resourceType"], None, res, "id must be a string")
    return Item(n, res["resourceType"], rid, res)


def _bundle_head(src: Source) -> tuple[object, object]:
    """``resourceType`` and ``type`` of the file's top-level object, read as a stream (the
    file is never held in memory; it stops as soon as both are seen)."""
    rtype = btype = None
    with _open(src.path) as fh:
        for prefix, event, value in ijson.parse(fh):
            if prefix == "resourceType" and event == "string":
                rtype = value
            elif prefix == "type" and event == "string":
                btype = value
            if rtype is not None and btype is not None:
                break
    return rtype, btype


def _bundle_items(src: Source, urn_lookup: Callable[[str], str | None] | None = None
                  ) -> Iterator[Item]:
    """Entries of a Bundle file (entry number 1-based), ids assigned, references rewritten.

    The file is streamed (ijson): one entry in memory at a time, whatever the file's size.
    References to other entries' ``fullUrl`` are rewritten through ``urn_lookup`` — the
    import's fullUrl map, which the scan filled from every file before loading, so an entry
    may refer to one later in the file or in another file."""
    try:
        rtype0, btype = _bundle_head(src)
    except (ijson.JSONError, OSError, EOFError, UnicodeDecodeError) as e:
        yield Item(1, error=f"the file is not valid JSON: {e}")
        return
    if not isinstance(rtype0, str):
        yield Item(1, error="the file is not a FHIR resource (no resourceType)")
        return
    if rtype0 != "Bundle" or btype not in BUNDLE_TYPES:
        # a single resource in a .json file
        try:
            with _open(src.path) as fh:
                doc = orjson.loads(fh.read())
        except (orjson.JSONDecodeError, OSError, EOFError) as e:
            yield Item(1, error=f"the file is not valid JSON: {e}")
            return
        if not isinstance(doc, dict) or doc.get("resourceType") != rtype0:
            yield Item(1, error="the file is not a FHIR resource (no resourceType)")
            return
        yield Item(1, rtype0, doc.get("id") or _line_id(src, 1), doc)
        return
    n = 0
    try:
        with _open(src.path) as fh:
            for e in ijson.items(fh, "entry.item", use_float=True):
                n += 1
                item = _bundle_entry(src, n, e)
                if item.resource is not None and item.error is None and urn_lookup is not None:
                    _rewrite(item.resource, item.rtype, {}, urn_lookup)
                yield item
    except (ijson.JSONError, OSError, EOFError, UnicodeDecodeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]  # no caret drawing
        yield Item(n + 1, error=f"the file is not valid JSON after entry {n} "
                                f"(Bundle.entry[{n}] or later is broken off or malformed): "
                                f"{reason}; the {n} entries before it were read")


def _bundle_entry(src: Source, n: int, e) -> Item:
    i = n - 1
    if not isinstance(e, dict):
        return Item(n, error=f"Bundle.entry[{i}] is not an object")
    res = e.get("resource")
    method = ((e.get("request") or {}).get("method") or "").upper()
    if method == "DELETE":
        return Item(n, error=f"Bundle.entry[{i}]: DELETE entries are not imported")
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        return Item(n, error=f"Bundle.entry[{i}] has no resource")
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
        return Item(n, rtype, None, res, "id must be a string")
    if not (isinstance(full_url, str) and full_url):
        full_url = None
    return Item(n, rtype, rid, res, full_url=full_url)


def _rewrite(res: dict, rtype: str | None, mapping: dict[str, str],
             urn_lookup: Callable[[str], str | None] | None) -> None:
    for _, obj in iter_references(res, rtype or "Resource"):
        ref = obj["reference"]
        new = mapping.get(ref)
        if new is None and urn_lookup is not None and (ref.startswith("urn:")
                                                       or "://" in ref):
            new = urn_lookup(ref)  # a fullUrl of an entry (urn:uuid:…, or an absolute URL)
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
        # logical references to patients (fødselsnummer …): the import's Patients and the
        # stored ones its resources name, for the workers to resolve against
        self.db.execute("CREATE TABLE persons (kind TEXT, value TEXT, id TEXT, "
                        "PRIMARY KEY (kind, value, id)) WITHOUT ROWID")
        self.db.execute("CREATE TABLE wanted (kind TEXT, value TEXT, PRIMARY KEY (kind, value)) "
                        "WITHOUT ROWID")
        self._pending: list[tuple[str, str]] = []
        self._cache: dict[tuple[str, str], bool] = {}

    def add(self, rtype: str, rid: str) -> None:
        self._pending.append((rtype, rid))
        if len(self._pending) >= 10000:
            self.flush()

    def add_facts(self, rid: str | None, facts) -> None:
        """What :func:`fkj.repository.patients.scan_facts` found in one resource."""
        if not facts:
            return
        own, wanted = facts
        if own and rid:
            self.db.executemany("INSERT OR IGNORE INTO persons VALUES (?, ?, ?)",
                                [(k, v, rid) for k, v in own])
        if wanted:
            self.db.executemany("INSERT OR IGNORE INTO wanted VALUES (?, ?)", wanted)

    def add_stored_persons(self, find: Callable[[set[tuple[str, str]]], dict]) -> None:
        """The stored Patients with the person identifiers the import refers to
        (``find``: :meth:`fkj.repository.repository.Repository.find_patients`)."""
        rows = self.db.execute("SELECT kind, value FROM wanted").fetchall()
        for start in range(0, len(rows), 500):
            found = find({(k, v) for k, v in rows[start:start + 500]})
            self.db.executemany("INSERT OR IGNORE INTO persons VALUES (?, ?, ?)",
                                [(k, v, i) for (k, v), ids in found.items() for i in ids])
        self.db.commit()

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
