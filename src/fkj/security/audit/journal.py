"""The audit journal: where a read's audit record is written before the answer is sent.

A read, search, operation or refusal is recorded in two steps:

1. **Written** — before the response leaves the server, the record is appended to this
   process's journal, an append-only file next to the database (one ``write(2)`` of one
   line; with ``FKJ_AUDIT_READ_SYNC=full`` also ``fdatasync``, shared by concurrent
   requests). If it cannot be written (disk full, I/O error) the read fails with 503.
   From then on the record survives a crash of the server process; it is lost only if the
   machine's disk is lost before step 2 — or, without ``full``, if the operating system
   crashes within the moments before the kernel writes its page cache out.
2. **Chained** — the writer's shipper moves the journal's records into the tenant's
   hash chain in the database (:mod:`fkj.security.audit.chain`), many records per
   transaction, within :data:`~fkj.security.audit.writer.SHIP_INTERVAL`. The same
   transaction moves the journal's *watermark* for that tenant (table ``audit_journal``:
   the last journal position shipped), so a record is chained exactly once even if the
   process dies between its commit and the next.

Journals of processes that died are *orphans*: every server process holds an exclusive
``flock`` on its own segment while it runs, so a segment whose lock can be taken has no
live owner. Orphans are shipped (from their watermark on) and deleted by the next server
started on the same database, and by running servers every :data:`ORPHAN_SCAN` seconds.

File format (UTF-8, one JSON object per line): a header
``{"fkj-audit-journal": 1, "journal": <id>, "database": <url without password>}``, then
one line per record — either the facts of a request's record, ``{"f": {...}}``, from which
the shipper builds the AuditEvent (:mod:`fkj.security.audit.facts`), or the audit row that is
inserted (``content`` is the AuditEvent's canonical JSON; ``recorded``, ``patients``,
``agent`` … its search columns) for records made as events — plus ``t`` (tenant) and ``j``
(position in this journal, 1, 2, …). An incomplete line (the process
died inside ``write``, or a write failed midway) was never acknowledged and is skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from fkj.security.audit.chain import audit_row
from fkj.security.audit.storable import storable

log = logging.getLogger(__name__)

SUFFIX = ".audit-journal"
FORMAT = 1
#: a segment is replaced by a new one once it is this large and everything in it is chained
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
#: seconds between a running server's looks for orphaned journals
ORPHAN_SCAN = 30.0


@dataclass(slots=True)
class Entry:
    """One record in a journal: its tenant, its position, the audit row (or the facts it is
    built from, ``{"f": …}``), and the row as written (JSON bytes without the newline; once
    built, the element sent to PostgreSQL)."""

    tenant: str
    seq: int
    row: dict
    line: bytes
    journal: str = ""


def database_identity(url: str) -> str:
    """The database a journal belongs to, as written in its header: the URL without its
    password or driver name (``postgresql://`` and ``postgresql+psycopg://`` name the same
    database)."""
    from sqlalchemy.engine import make_url
    u = make_url(url)
    return u.set(drivername=u.get_backend_name()).render_as_string(hide_password=True)


def default_directory(url: str, base: str | os.PathLike | None = None) -> Path:
    """Where the journals of the database at ``url`` live: ``FKJ_AUDIT_JOURNAL_DIR`` (or
    ``base``) — by default the SQLite file's folder, else ``./fkj-data`` — in a folder named
    after the database, so that journals of different databases never meet."""
    from sqlalchemy.engine import make_url
    u = make_url(url)
    base = base or os.environ.get("FKJ_AUDIT_JOURNAL_DIR")
    if not base:
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
            base = Path(u.database).resolve().parent
        else:
            base = Path("fkj-data")
    digest = hashlib.sha256(database_identity(url).encode()).hexdigest()[:12]
    return Path(base) / f"audit-journal-{digest}"


class AuditJournal:
    """This process's journal segment: appends records, syncs them, and is replaced by a
    fresh segment once it is large and fully chained. Thread-safe.

    The segment file is created on the first append (a process that never records a read
    leaves no file)."""

    def __init__(self, directory: str | os.PathLike, database: str, *, sync: str = "normal",
                 max_bytes: int = MAX_SEGMENT_BYTES):
        if sync not in ("normal", "full"):
            raise ValueError(f"sync must be 'normal' or 'full', not {sync!r}")
        self.directory = Path(directory)
        self.database = database
        self.sync = sync
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._fd: int | None = None
        self.journal_id = ""
        self.path: Path | None = None
        self._seq = 0
        self._size = 0
        self._written = 0  # bytes written to the current segment
        self._synced = 0   # bytes of it known to be on disk
        self._torn = False  # the last write failed midway
        self._closed = False

    # ------------------------------------------------------------------ writing
    def append(self, tenant: str, rows: list[dict], then=None) -> list[Entry]:
        """Write ``rows`` (audit rows of ``tenant``) as one ``write``; with ``sync="full"``
        return only once they are on disk. ``then(entries)`` runs under the journal's lock
        right after the write, so callers can queue the entries in journal order.

        Raises ``OSError`` if the records could not be written (the access must then fail).
        """
        with self._lock:
            if self._closed:
                raise OSError("the audit journal is closed")
            if self._fd is None:
                self._open_segment()
            entries, chunks = [], [b""] if self._torn else []
            seq, journal = self._seq, self.journal_id
            for row in rows:
                seq += 1
                try:
                    line = orjson.dumps({**row, "t": tenant, "j": seq})
                except orjson.JSONEncodeError:
                    # a string JSON cannot hold (a lone surrogate from a request): kept
                    # escaped, as the chain will hold it (fkj.security.audit.storable)
                    row = storable(row)
                    line = orjson.dumps({**row, "t": tenant, "j": seq})
                entries.append(Entry(tenant, seq, row, line, journal))
                chunks.append(line)
            data = b"\n".join(chunks) + b"\n"
            try:
                _write_all(self._fd, data)
            except OSError:
                # part of the data may be on disk: the next write starts on a new line, so
                # the torn one stays a line of its own (skipped when the segment is read)
                self._torn = True
                raise
            self._torn = False
            self._seq = seq
            self._written += len(data)
            end, segment = self._written, self._fd
            if then is not None:
                then(entries)
        if self.sync == "full":
            self._sync_upto(segment, end)
        return entries

    def _sync_upto(self, segment: int, end: int) -> None:
        """Group fdatasync: whoever syncs covers every write before it. A segment retired
        meanwhile needs none: its records are chained (and committed synchronously)."""
        with self._sync_lock:
            if self._fd != segment or self._synced >= end:
                return
            target = self._written
            os.fdatasync(segment)
            self._synced = max(self._synced, target)

    def _open_segment(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.journal_id = uuid.uuid4().hex
        self.path = self.directory / f"{self.journal_id}{SUFFIX}"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            header = orjson.dumps({"fkj-audit-journal": FORMAT, "journal": self.journal_id,
                                   "database": self.database}) + b"\n"
            _write_all(fd, header)
            os.fsync(fd)  # the segment exists and names its database before any record
            _fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._seq = 0
        self._torn = False
        self._written = self._synced = len(header)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    # ------------------------------------------------------------------ retiring
    def segment(self) -> tuple[str, int]:
        """(journal id, last position written) of the current segment."""
        with self._lock:
            return self.journal_id, self._seq

    def retire_if_full(self, shipped: tuple[str, int]) -> str | None:
        """Delete the current segment when it is over ``max_bytes`` and everything in it is
        chained (``shipped`` = (journal id, last chained position)); the next append opens a
        new one. Returns the retired journal id (its watermark rows can go)."""
        with self._sync_lock, self._lock:
            if (self._fd is None or self._written < self.max_bytes
                    or shipped != (self.journal_id, self._seq)):
                return None
            return self._retire()

    def close(self, *, chained: bool) -> str | None:
        """Close the segment; delete it if everything in it is chained (``chained``), else
        leave it as an orphan for the next process. Returns the deleted journal id."""
        with self._sync_lock, self._lock:
            self._closed = True
            if self._fd is None:
                return None
            if chained:
                return self._retire()
            self._close_fd()  # the lock goes with it: the segment is an orphan now
            return None

    def _retire(self) -> str:
        journal, path = self.journal_id, self.path
        try:
            if path is not None:
                path.unlink()
        finally:
            self._close_fd()
        return journal


# ---------------------------------------------------------------------- reading orphans
@dataclass
class Orphan:
    """A journal segment without a live owner, locked by the process recovering it."""

    path: Path
    journal_id: str
    database: str
    entries: list[Entry]
    fd: int

    def release(self, *, delete: bool) -> None:
        try:
            if delete:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


def orphans(directory: str | os.PathLike, database: str) -> Iterator[Orphan]:
    """Segments in ``directory`` whose owner is gone (their lock could be taken), of the
    database ``database``; each is yielded locked, so no other process recovers it at the
    same time. The caller must :meth:`Orphan.release` it."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # recovered and deleted by another process meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live process owns it (or recovers it)
        try:
            if not path.exists():  # deleted between our open and our lock
                os.close(fd)
                continue
            header, entries = read_segment(fd)
        except (OSError, ValueError) as e:
            log.error("audit journal %s cannot be read (%s); left in place", path, e)
            os.close(fd)
            continue
        if header is None:  # created but its header never written: holds no record
            yield Orphan(path, "", database, [], fd)
            continue
        if header.get("database") != database:
            log.warning("audit journal %s belongs to %s, not to this database; left in place",
                        path, header.get("database"))
            os.close(fd)
            continue
        yield Orphan(path, str(header.get("journal") or path.stem.split(".")[0]), database,
                     entries, fd)


def read_segment(fd: int) -> tuple[dict | None, list[Entry]]:
    """The header and the complete records of a segment (a torn last line is skipped)."""
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        chunks.append(b)
    data = b"".join(chunks)
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a line whose write never completed
    if not lines:
        return None, []
    header = orjson.loads(lines[0])
    if header.get("fkj-audit-journal") != FORMAT:
        raise ValueError(f"not an audit journal of format {FORMAT}")
    entries = []
    journal = str(header.get("journal") or "")
    for n, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        try:
            obj = orjson.loads(line)
            tenant, seq = obj.pop("t"), int(obj.pop("j"))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # a write that failed midway (its access was refused, never answered)
            log.warning("audit journal line %d is incomplete and was skipped", n)
            continue
        entries.append(Entry(tenant, seq, obj, line, journal))
    return header, entries


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["AuditJournal", "Entry", "Orphan", "audit_row", "database_identity",
           "default_directory", "orphans", "read_segment"]
