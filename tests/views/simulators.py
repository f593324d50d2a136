"""Start the national-service simulators as real separate processes on free ports."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.ports import free_port


class Simulator:
    def __init__(self, kind: str, tenant: str, patients: int, seed: int = 42,
                 fault: str | None = None, delay_ms: int = 0, slow_ms: int = 3000,
                 extra: str | None = None):
        self.kind, self.fault = kind, fault
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "fkj.cli.simulate", kind, "--port", str(self.port),
                "--tenant", tenant, "--patients", str(patients), "--seed", str(seed),
                "--delay-ms", str(delay_ms), "--slow-ms", str(slow_ms)]
        if fault:
            args += ["--fault", fault]
        if extra:  # JSON file of facts only this service knows (seed ids)
            args += ["--extra", extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if fault != "down":
            self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator {self.kind} exited: "
                                   f"{self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"simulator {self.kind} did not start")

    def config(self, **extra) -> dict:
        return {"name": self.kind, "base_url": self.url, "client_id": "fkj",
                "client_secret": "fkj-secret", **extra}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SimulatorPool:
    """Simulators started on demand, kept for the session, stopped at the end."""

    def __init__(self):
        self.running: dict[tuple, Simulator] = {}

    def get(self, kind: str, tenant: str, patients: int, **kw) -> Simulator:
        key = (kind, tenant, patients, tuple(sorted(kw.items())))
        sim = self.running.get(key)
        if sim is None or sim.proc.poll() is not None:
            sim = self.running[key] = Simulator(kind, tenant, patients, **kw)
        return sim

    def stop_all(self) -> None:
        for sim in self.running.values():
            sim.stop()
        self.running.clear()
