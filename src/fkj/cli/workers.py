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
    uvicorn.Server(config).run(sockets=[sock])


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
