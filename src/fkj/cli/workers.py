"""Several server processes on one port, each with a listening socket of its own.

uvicorn's own supervisor hands every worker the same listening socket, and whichever
worker's event loop wakes first accepts a new connection. Connections opened together — an
EHR's connection pool, a reverse proxy's keep-alive pool, a benchmark's clients — mostly
landed on one worker: eight keep-alive connections to two workers split 6/2, 7/1, 8/0, 8/0
and 6/2 in five tries, so one core served a client while the other idled. Here every worker
binds its own socket with ``SO_REUSEPORT`` and the kernel spreads the connections over them
by their addresses.

The supervisor restarts a worker that dies, stops everything when a worker could not start
(its app or socket would fail the same way again), and on SIGTERM/SIGINT stops the workers
(each finishes its requests, see uvicorn) and exits. A worker stops when its supervisor dies,
however it dies.

Every server process — the single one of ``fkj serve --workers 1`` and each worker — runs
uvicorn through :func:`serve`, which bounds its stop: from SIGTERM/SIGINT it has
:data:`STOP_SECONDS` (a worker a second less, so it ends before its supervisor would kill
it). Requests under way get half of it, then the app is closed (:func:`at_stop`: the audit
log chains what it can and writes a last checkpoint), and if anything is still stuck by
then — a request's thread or the audit shipper waiting on a database lock, which no
cancellation reaches — the process ends itself. Nothing acknowledged is lost: every read's
audit record was in the process's audit journal before its answer, and the journal, no
longer locked, is chained by the next process (or ``fkj audit recover``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time

log = logging.getLogger(__name__)

#: a worker's exit code when it could not start (uvicorn's: the app could not be loaded;
#: ours: its socket could not be bound): starting another would fail the same way
STARTUP_FAILURE = 3
#: seconds a stopping worker gets to finish its requests before it is killed
STOP_SECONDS = 10.0


def listening_socket(host: str, port: int, *, shared: bool = True) -> socket.socket:
    """A listening TCP socket on (host, port) that other processes of this user may bind
    too (``SO_REUSEPORT``); with ``shared=False`` one that fails if anything listens there
    already."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


#: exit status of a process that did not stop in time and ended itself
STUCK_EXIT = 1
_on_stop: list = []
_deadline_armed = threading.Event()


def at_stop(close) -> None:
    """Call ``close()`` when this process's server has stopped (before it exits)."""
    _on_stop.append(close)


def _arm_deadline(seconds: float) -> None:
    """From now on the process has ``seconds`` to end; then it ends itself."""
    if _deadline_armed.is_set():
        return
    _deadline_armed.set()

    def expire() -> None:
        time.sleep(seconds)
        log.error("the server did not stop within %.0f s of the signal (a request or the "
                  "audit shipper is stuck, e.g. waiting for a database lock); it ends now — "
                  "audit records not yet chained stay in its audit journal, for the next "
                  "process", seconds)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(STUCK_EXIT)
    threading.Thread(target=expire, daemon=True, name="fkj-stop-deadline").start()


class StopAnswer:
    """ASGI wrapper: a request cut off because the server is stopping (uvicorn cancels what
    is still running when its graceful stop is over) is answered 503 with Retry-After and
    an OperationOutcome, not uvicorn's plain-text 500. What it was doing did not commit."""

    BODY = (b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":'
            b'"transient","diagnostics":"the server is stopping; the request was not '
            b'completed. Retry it."}]}')

    def __init__(self, app):
        self.app = app

    def __getattr__(self, name):
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)
        import asyncio
        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            if started:
                raise
            # answered here, and the request's task ends: nothing is left to cancel (its
            # thread, stuck in the database, ends with the process)
            try:
                await send({"type": "http.response.start", "status": 503, "headers": [
                    (b"content-type", b"application/fhir+json"), (b"retry-after", b"1"),
                    (b"content-length", str(len(self.BODY)).encode())]})
                await send({"type": "http.response.body", "body": self.BODY})
            except Exception as e:  # noqa: BLE001 - the connection is going anyway
                log.debug("the stopping answer was not sent: %s", e)


def serve(config, sockets: list[socket.socket] | None = None, *,
          deadline: float = STOP_SECONDS) -> None:
    """Run uvicorn with ``config`` until SIGTERM/SIGINT; then stop within ``deadline``
    seconds (see the module docstring)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            _arm_deadline(deadline)
            # as uvicorn's, without re-raising the signal once stopped: the app is closed
            # after run() returns, and the process then exits normally
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    config.timeout_graceful_shutdown = max(1.0, deadline / 2)
    Server(config).run(sockets=sockets)
    _arm_deadline(deadline)  # stopped for another reason: closing is bounded all the same
    while _on_stop:
        close = _on_stop.pop()
        try:
            close()
        except Exception:
            log.exception("closing the server's app failed")


def _worker(app: str, host: str, port: int, log_level: str, parent: int) -> None:
    """One server process: its own socket on the shared port, the app from ``app``
    (``module:factory``). It stops (SIGTERM) when the supervisor dies, however it dies."""
    import uvicorn

    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:
        return  # the supervisor died before the line above
    try:
        sock = listening_socket(host, port)
    except OSError as e:
        log.error("server worker cannot listen on %s:%s: %s", host, port, e)
        sys.exit(STARTUP_FAILURE)
    config = uvicorn.Config(app, factory=True, host=host, port=port, log_level=log_level,
                            access_log=False)
    # ends itself before the supervisor's STOP_SECONDS are up, so that it says why
    serve(config, [sock], deadline=STOP_SECONDS - 1)


class Workers:
    """``count`` worker processes serving ``app`` on (host, port); :meth:`run` blocks until
    SIGTERM/SIGINT (or :meth:`stop`) and returns the exit code."""

    def __init__(self, app: str, host: str, port: int, count: int,
                 log_level: str = "warning"):
        self.app, self.host, self.port, self.count = app, host, port, count
        self.log_level = log_level
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[tuple[multiprocessing.process.BaseProcess, float]] = []
        self._stop = threading.Event()
        self.failed = False

    def _start_one(self):
        p = self._context.Process(target=_worker, name="fkj-worker", daemon=False,
                                  args=(self.app, self.host, self.port, self.log_level,
                                        os.getpid()))
        p.start()
        return p, time.monotonic()

    def stop(self, *_args) -> None:
        self._stop.set()

    def run(self) -> int:
        # the port must be free before any worker starts: a port that another program (or
        # another fkj serve, whose sockets would otherwise share it) listens on fails here,
        # once, with the reason
        listening_socket(self.host, self.port, shared=False).close()
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._processes = [self._start_one() for _ in range(self.count)]
            while not self._stop.wait(0.5):
                self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failed else 0

    def _watch(self) -> None:
        for i, (p, started) in enumerate(self._processes):
            if p.is_alive():
                continue
            if p.exitcode == STARTUP_FAILURE:
                log.error("server worker %s could not start; stopping", p.pid)
                self.failed = True
                self._stop.set()
                return
            if time.monotonic() - started < 1.0:
                continue  # at most one replacement per second for a worker that keeps dying
            log.warning("server worker %s ended (exit code %s); starting another",
                        p.pid, p.exitcode)
            self._processes[i] = self._start_one()

    def _stop_all(self) -> None:
        for p, _ in self._processes:
            if p.is_alive():
                p.terminate()  # SIGTERM: uvicorn finishes the requests under way
        deadline = time.monotonic() + STOP_SECONDS
        for p, _ in self._processes:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
