"""Stopping a statement that runs too long, or whose client has gone away.

A search runs in a worker thread of the server; when its client disconnected, the
statement went on — on PostgreSQL for minutes, after the server process itself had gone.
Three things stop it now:

* **A statement timeout** (:func:`statement_guard`): PostgreSQL ``statement_timeout`` set
  for the search's transaction (``set_config(…, true)``, in the one statement that also
  sets ``plan_cache_mode``: no extra round trip), SQLite a progress handler that stops the
  statement at the deadline. A search that runs into it answers **400** with issue code
  ``too-costly`` (a client that retried it would only load the database again; a 503 would
  invite exactly that).
* **The client going away** (:func:`run_in_thread`, which the HTTP edge runs a read's
  handler with): the ASGI ``http.disconnect`` message cancels the statement the request is
  running — psycopg's ``cancel_safe()`` (a cancel request to the server), SQLite the
  progress handler (it runs in the statement's own thread: nothing to race with). A
  PostgreSQL connection a cancel was sent on is closed rather than pooled: a cancel that
  arrived late would otherwise hit the next request's statement.
* **The server going away**: PostgreSQL ≥ 14 checks every second whether the client of a
  running statement is still connected (``client_connection_check_interval``), so a
  search of a server process that was killed ends within a second, not when it is done.

Writes are never cancelled on a disconnect (their outcome would become a guess); only the
statements run inside :func:`statement_guard` — searches — attach to the request.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from fkj.errors import FhirError, InvalidSearch

log = logging.getLogger("fkj.store")

#: SQLite: the progress handler runs every this many virtual-machine instructions
#: (about a tenth of a millisecond of work)
PROGRESS_STEPS = 10_000
#: PostgreSQL ≥ 14: how often a running statement checks that its client is still there
CLIENT_CHECK_MS = 1000


class ClientGone(FhirError):
    """The client disconnected and its search was stopped (nobody receives the answer; the
    audit log records it as 499, nginx's "client closed request")."""

    status, code = 499, "incomplete"


class Cancellation:
    """A request's handle on the statement it is running: :meth:`cancel` (from the event
    loop's side) stops it, :func:`statement_guard` (in the worker thread) attaches and
    detaches the connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancel: Callable[[], Any] | None = None
        self.cancelled = False
        #: a PostgreSQL cancel request went to the attached connection
        self.sent = False

    def attach(self, cancel: Callable[[], Any] | None) -> None:
        with self._lock:
            self._cancel = cancel

    def detach(self) -> bool:
        """Forget the connection; True if a cancel request was sent to it."""
        with self._lock:
            self._cancel = None
            sent, self.sent = self.sent, False
            return sent

    def cancel(self) -> None:
        """Stop the running statement, and any the request starts after this (blocks for
        the cancel request's round trip on PostgreSQL: not on the event loop)."""
        with self._lock:
            self.cancelled = True
            if self._cancel is not None:
                try:
                    self._cancel()
                    self.sent = True
                except Exception:  # the statement still ends at the timeout
                    log.warning("could not cancel a statement", exc_info=True)


_current: ContextVar[Cancellation | None] = ContextVar("fkj_statement_cancellation",
                                                       default=None)
_SETTINGS_SQL: dict[int, Any] = {}


def _settings_sql(n: int):
    """``SELECT current_setting('statement_timeout'), set_config(:n0, :v0, true), …``"""
    sql = _SETTINGS_SQL.get(n)
    if sql is None:
        sql = _SETTINGS_SQL[n] = text("SELECT current_setting('statement_timeout')" + "".join(
            f", set_config(:n{i}, :v{i}, true)" for i in range(n)))
    return sql


async def run_in_thread(request, func: Callable[..., Any], *args: Any) -> Any:
    """``await func(*args)`` in a worker thread (as Starlette's ``run_in_threadpool``). For
    a read — ``GET``, ``HEAD``, ``POST …/_search`` — the searches it runs are cancelled
    when the client disconnects (see the module docstring)."""
    from starlette.concurrency import run_in_threadpool

    method, path = request.method, request.scope.get("path", "")
    if method not in ("GET", "HEAD") and not (method == "POST" and path.endswith("/_search")):
        return await run_in_threadpool(func, *args)
    cancellation = Cancellation()
    token = _current.set(cancellation)
    try:  # the task copies the context: the worker thread sees the cancellation
        work = asyncio.ensure_future(run_in_threadpool(func, *args))
    finally:
        _current.reset(token)
    watcher = asyncio.ensure_future(_watch(request.receive, cancellation))
    try:
        return await work
    finally:
        watcher.cancel()


async def _watch(receive, cancellation: Cancellation) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            # psycopg's cancel waits for the server: never on the event loop
            threading.Thread(target=cancellation.cancel, name="fkj-cancel",
                             daemon=True).start()
            return


@contextmanager
def statement_guard(conn: Connection, timeout: float, *,
                    settings: dict[str, str] | None = None, restore: bool = False,
                    expression: list[str] | None = None) -> Iterator[None]:
    """Run the statements of the block under ``timeout`` seconds each (0: none) and let the
    current request's client disconnect cancel them.

    ``settings``: further transaction-local PostgreSQL settings, made in the same statement.
    ``restore``: put ``statement_timeout`` back afterwards (a search inside a write
    transaction must not bound the writes after it). A timeout raises
    :class:`~fkj.errors.InvalidSearch` (400, ``too-costly``, ``expression``: the search's
    parameters), a disconnect :class:`ClientGone`."""
    cancellation = _current.get()
    dbapi = conn.connection.driver_connection
    pg = conn.dialect.name == "postgresql"
    previous = None
    timed_out = {"hit": False}
    if pg:
        values = dict(settings or {})
        values["statement_timeout"] = str(int(timeout * 1000))
        if (conn.dialect.server_version_info or (0,)) >= (14,):
            values["client_connection_check_interval"] = str(CLIENT_CHECK_MS)
        binds = {}
        for i, (name, value) in enumerate(values.items()):
            binds[f"n{i}"], binds[f"v{i}"] = name, value
        previous = conn.execute(_settings_sql(len(values)), binds).scalar_one()
        if cancellation is not None:
            cancellation.attach(dbapi.cancel_safe)
    else:
        deadline = time.monotonic() + timeout if timeout > 0 else None

        def progress() -> int:
            if cancellation is not None and cancellation.cancelled:
                return 1
            if deadline is not None and time.monotonic() > deadline:
                timed_out["hit"] = True
                return 1
            return 0
        dbapi.set_progress_handler(progress, PROGRESS_STEPS)
    failed = True
    try:
        if cancellation is not None and cancellation.cancelled:
            raise ClientGone("the client went away; the search was not run")
        yield
        failed = False
    except DBAPIError as e:
        if cancellation is not None and cancellation.cancelled and _stopped(e):
            raise ClientGone("the client went away; the search was stopped") from e
        if _stopped(e) and (pg or timed_out["hit"]):
            raise InvalidSearch(
                f"the search ran for more than {timeout:g} s and was stopped; narrow it "
                "(fewer or more selective parameters, fewer values) or page with a smaller "
                "_count", expression=expression or [], code="too-costly") from e
        raise
    finally:
        if pg:
            sent = cancellation.detach() if cancellation is not None else False
            if sent:
                conn.invalidate()  # a late cancel must not reach the next request
                if not failed:  # finished as the cancel went out: nobody is listening
                    raise ClientGone("the client went away")
            elif restore and not failed:
                conn.execute(text("SELECT set_config('statement_timeout', :v, true)"),
                             {"v": previous})
        else:
            dbapi.set_progress_handler(None, PROGRESS_STEPS)


def _stopped(e: DBAPIError) -> bool:
    """A statement cancelled (PostgreSQL SQLSTATE 57014: timeout or cancel request) or
    interrupted (SQLite's progress handler)."""
    orig = e.orig
    if isinstance(orig, sqlite3.OperationalError):
        return "interrupted" in str(orig)
    return getattr(orig, "sqlstate", None) == "57014"



__all__ = ["CLIENT_CHECK_MS", "Cancellation", "ClientGone", "run_in_thread",
           "statement_guard"]
