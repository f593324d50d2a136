"""``fkj serve --workers N``: every worker has a listening socket of its own, so the
connections of one client are spread over the workers; the supervisor replaces a worker
that dies, refuses a port in use, and its workers end with it (fkj.cli.workers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli import fkj
from tests.ports import free_port

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux /proc")


@pytest.fixture
def database(tmp_path):
    url = f"sqlite:///{tmp_path / 'workers.sqlite'}"
    assert fkj("migrate", url=url).returncode == 0
    assert fkj("tenant", "create", "4601", "--name", "Bergen", url=url).returncode == 0
    return url


def start(url: str, port: int, workers: int = 2) -> subprocess.Popen:
    env = {**os.environ, "FKJ_DATABASE_URL": url}
    return subprocess.Popen([sys.executable, "-m", "fkj", "serve", "--port", str(port),
                             "--workers", str(workers)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def children(pid: int) -> list[int]:
    """The worker processes of supervisor ``pid`` (not multiprocessing's resource
    tracker)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                cmdline = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline \
                    and _state(int(d.name)) != "Z":
                out.append(int(d.name))
    return sorted(out)


def workers_of(proc: subprocess.Popen, n: int = 2, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(proc.pid)
        if len(found) == n:
            return found
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else proc.returncode
        time.sleep(0.1)
    raise AssertionError(f"{n} workers did not start")


def ready(port: int, workers: list[int] | None = None, timeout: float = 60) -> None:
    """The server answers, and (given ``workers``) every worker listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answered = httpx.get(f"http://127.0.0.1:{port}/fhir/4601/metadata",
                                 timeout=2).status_code == 200
            if answered and (workers is None or all(listening(w, port) for w in workers)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not come up")


def _tcp_rows():
    """(local port, remote port, state, inode) of every IPv4 TCP socket."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        yield int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16), f[3], f[9]


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def listening(pid: int, port: int) -> bool:
    mine = _socket_inodes(pid)
    return any(lp == port and st == "0A" and inode in mine for lp, _, st, inode in _tcp_rows())


def owners(port: int, clients: list[socket.socket], workers: list[int]) -> dict[int, int]:
    """How many of ``clients``' connections each worker holds."""
    remote = {c.getsockname()[1] for c in clients}
    inodes = {inode for lp, rp, st, inode in _tcp_rows()
              if lp == port and rp in remote and st == "01"}
    return {w: len(inodes & _socket_inodes(w)) for w in workers}


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.fixture
def serving(database):
    """``fkj serve --workers 2`` with every worker listening: (process, port, worker pids);
    stopped (SIGTERM) at the end unless the test ended it."""
    port = free_port()
    proc = start(database, port)
    try:
        workers = workers_of(proc)
        ready(port, workers)
        yield proc, port, workers
    finally:
        stop(proc)


def test_one_clients_connections_are_spread_over_the_workers(serving):
    proc, port, workers = serving
    clients = [socket.create_connection(("127.0.0.1", port))  # opened together, as a pool
               for _ in range(32)]
    for c in clients:
        c.sendall(b"GET /fhir/4601/metadata HTTP/1.1\r\nHost: x\r\n\r\n")
    for c in clients:
        assert c.recv(64).startswith(b"HTTP/1.1 200")
    held = owners(port, clients, workers)
    assert sum(held.values()) == 32, held
    # with one shared socket they mostly went to one worker; by address hash, a split
    # of 32/0 has a chance of 2 in 2**32
    assert all(n >= 1 for n in held.values()), held
    for c in clients:
        c.close()
    stop(proc)
    assert proc.returncode == 0
    assert children(proc.pid) == []


def test_a_worker_that_dies_is_replaced(serving):
    proc, port, workers = serving
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = children(proc.pid)
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.2)
    now = children(proc.pid)
    assert len(now) == 2 and workers[0] not in now and workers[1] in now
    ready(port, now)
    assert proc.poll() is None


def test_a_port_in_use_is_refused_once_with_the_reason(database):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        r = subprocess.run([sys.executable, "-m", "fkj", "serve", "--port", str(port),
                            "--workers", "2"], capture_output=True, text=True, timeout=60,
                           check=False, env={**os.environ, "FKJ_DATABASE_URL": database})
    finally:
        holder.close()
    assert r.returncode == 1
    assert "Address already in use" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_the_workers_end_with_a_killed_supervisor(serving):
    proc, port, workers = serving
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() and
                                              "Z" not in _state(w) for w in workers):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{w}").exists() and "Z" not in _state(w) for w in workers)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/fhir/4601/metadata", timeout=2)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
