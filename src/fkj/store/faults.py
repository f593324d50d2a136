"""Faults of the storage, named once: which exceptions of the drivers mean "the database
cannot be reached" (503 with ``Retry-After``) or "the disk is full" (507), for every route.

``fault_for(exc)`` returns the :class:`~fkj.errors.FhirError` an exception stands for, or
``None`` when it is not a fault of the storage (then it is a bug: logged and answered 500).
The HTTP edge (:mod:`fkj.edge`) and the request handler (:mod:`fkj.app`) apply it; no route
needs a ``try`` of its own::

    exception (or one in its __cause__/__context__ chain)        answer
    PostgreSQL: cannot connect, connection lost, server shutting  503 DatabaseUnavailable
      down or starting up (class 08, 57P01-57P03), too many
      connections / out of memory (53200, 53300, 53400), a pooled
      connection the server ended (connection_invalidated)
    PostgreSQL: serialization failure, deadlock, lock not         503 ServiceUnavailable
      available (class 40, 55P03)                                   (lock-error)
    PostgreSQL: statement cancelled (57014, statement_timeout)    503 ServiceUnavailable
                                                                    (timeout)
    PostgreSQL: disk full (53100)                                 507 InsufficientStorage
    SQLite: SQLITE_FULL ("database or disk is full")              507 InsufficientStorage
    SQLite: busy/locked after the busy timeout                    503 ServiceUnavailable
                                                                    (lock-error)
    SQLite: cannot open the file, read-only file, I/O error       503 DatabaseUnavailable
    SQLAlchemy: no pooled connection free within pool_timeout     503 DatabaseUnavailable
    OSError ENOSPC / EDQUOT (a journal or an export file)         507 InsufficientStorage

The chain is followed because a fault is often masked by what the code did next: SQLite
rolls a transaction back by itself on SQLITE_FULL, and the ``ROLLBACK`` that follows fails
with "cannot rollback - no transaction is active" — the disk, not the rollback, is the cause.
"""

from __future__ import annotations

import errno
import sqlite3

from sqlalchemy import exc as sa_exc

from fkj.errors import (
    DatabaseUnavailable,
    FhirError,
    InsufficientStorage,
    ServiceUnavailable,
)

try:  # PostgreSQL is optional at import time (SQLite-only installations)
    import psycopg
except ImportError:  # pragma: no cover
    psycopg = None  # type: ignore[assignment]

__all__ = ["fault_for"]

_DISK_FULL_ERRNO = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_SQLITE_FULL = 13
_SQLITE_BUSY = {5, 6}  # BUSY, LOCKED: still held by another writer after the busy timeout
_SQLITE_UNAVAILABLE = {8: "the database file is read-only",                  # READONLY
                       10: "the database file cannot be read or written",    # IOERR
                       14: "the database file cannot be opened",             # CANTOPEN
                       15: "the database file's lock protocol failed"}       # PROTOCOL

DISK_FULL = ("the disk of the database is full; nothing was stored. The operator must "
             "free space")
UNREACHABLE = ("the database cannot be reached; retry (a create with If-None-Exist, so that "
               "one whose answer was lost is not made twice)")


def fault_for(exc: BaseException) -> FhirError | None:
    """The error ``exc`` stands for if it is a fault of the storage, else ``None``.

    >>> import sqlite3
    >>> fault_for(sqlite3.OperationalError("database or disk is full")).status
    507
    >>> fault_for(ValueError("a bug")) is None
    True
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, FhirError) and current is not exc:
            return None  # a deliberate answer further down: not ours to rename
        found = _one(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _one(exc: BaseException) -> FhirError | None:
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no free connection in time
        return DatabaseUnavailable("no connection to the database became free in time; "
                                   "retry")
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable("the connection to the database was lost and nothing "
                                   "was confirmed; retry the request (a create with "
                                   "If-None-Exist, so that it is not made twice)")
    if isinstance(orig, sqlite3.Error):
        return _sqlite(orig)
    if psycopg is not None and isinstance(orig, psycopg.Error):
        return _postgres(orig)
    if isinstance(orig, OSError) and orig.errno in _DISK_FULL_ERRNO:
        where = f" ({orig.filename})" if orig.filename else ""
        return InsufficientStorage(f"the disk is full{where}: {orig.strerror}; nothing was "
                                   "stored. The operator must free space")
    return None


def _sqlite(orig: sqlite3.Error) -> FhirError | None:
    code = getattr(orig, "sqlite_errorcode", None)
    if code is None:  # Python < 3.11: only the message
        text = str(orig)
        if "database or disk is full" in text:
            code = _SQLITE_FULL
        elif "database is locked" in text:
            code = 5
        elif "unable to open database file" in text:
            code = 14
        elif "disk I/O error" in text:
            code = 10
        else:
            return None
    primary = code & 0xFF
    if primary == _SQLITE_FULL:
        return InsufficientStorage(DISK_FULL)
    if primary in _SQLITE_BUSY:
        return ServiceUnavailable(f"the database is busy ({orig}); nothing was stored: retry",
                                  code="lock-error")
    if primary in _SQLITE_UNAVAILABLE:
        return DatabaseUnavailable(f"{_SQLITE_UNAVAILABLE[primary]} ({orig}); retry")
    return None


def _postgres(orig) -> FhirError | None:
    state = getattr(orig, "sqlstate", None) or ""
    if state == "53100":
        return InsufficientStorage(DISK_FULL)
    if state.startswith("40") or state == "55P03":
        return ServiceUnavailable("the transaction conflicted with another and was rolled "
                                  "back; nothing was stored: retry", code="lock-error")
    if state == "57014":
        return ServiceUnavailable("the database cancelled the statement (it ran longer than "
                                  "allowed)", code="timeout")
    if isinstance(orig, (psycopg.OperationalError, psycopg.InterfaceError)):
        return DatabaseUnavailable(UNREACHABLE)
    return None
