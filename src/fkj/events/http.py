"""The HTTP client of notification deliveries (rest-hook POSTs), on the delivery worker's
asyncio loop.

Every new connection goes through the endpoint policy (:mod:`fkj.events.endpoints`): the
host name is resolved once, the addresses are checked, and the socket is opened to a checked
address (TLS verifies the certificate against the host name) — no second lookup that DNS
rebinding could answer differently. Redirects are not followed (a 3xx is a failure)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from fkj.events.endpoints import EndpointPolicy, EndpointRefused


class AsyncHttp:
    """A small HTTP/1.1 client for notification POSTs on an asyncio loop: keep-alive
    connections per scheme/host/port (at most ``limit`` at a time), a timeout for the whole
    exchange, and one retry on a fresh connection when a kept-alive one turns out closed."""

    IDLE_S = 30.0

    def __init__(self, limit: int = 32,
                 policy: Callable[[], EndpointPolicy | None] | None = None):
        self.limit = max(1, limit)
        #: the endpoint policy in force (asked per delivery: the operator's settings count
        #: as they are now); None only for callers that check addresses themselves
        self._policy = policy
        self._idle: dict[tuple, list] = {}
        self._sems: dict[tuple, asyncio.Semaphore] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, headers: list[tuple[str, str]], body: bytes,
                   timeout: float) -> str | None:
        """None on a 2xx answer, else why not."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            return f"invalid endpoint {url!r}"
        if parts.scheme not in ("http", "https") or not host:
            return f"invalid endpoint {url!r}"
        tls = parts.scheme == "https"
        port = port or (443 if tls else 80)
        policy = self._policy() if self._policy is not None else None
        if policy is not None and not tls and not policy.allow_http:
            return "endpoint refused: http is not allowed (https only)"
        key = (parts.scheme, host, port)
        netloc = parts.netloc.rpartition("@")[2]
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {path} HTTP/1.1", f"Host: {netloc}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body
        sem = self._sems.setdefault(key, asyncio.Semaphore(self.limit))
        async with sem:
            for attempt in (0, 1):
                conn = self._take(key)
                reused = conn is not None
                try:
                    async with asyncio.timeout(timeout):
                        if conn is None:
                            conn = await self._connect(policy, host, port, tls)
                        status, keep = await self._exchange(conn, request)
                except EndpointRefused as e:
                    return f"endpoint refused: {e}"
                except (asyncio.IncompleteReadError, ConnectionError) as e:
                    self._close(conn)
                    if reused and attempt == 0:
                        continue  # a kept-alive connection the endpoint had closed
                    return f"{type(e).__name__}: connection closed ({e})"
                except TimeoutError:
                    self._close(conn)
                    return f"no answer within {timeout:g} s"
                except (OSError, ValueError, asyncio.LimitOverrunError) as e:
                    self._close(conn)
                    return f"{type(e).__name__}: {e}"
                if keep:
                    self._idle.setdefault(key, []).append((conn, time.monotonic()))
                else:
                    self._close(conn)
                return None if 200 <= status < 300 else f"HTTP {status}"
        return "unreachable"

    async def _connect(self, policy: EndpointPolicy | None, host: str, port: int, tls: bool):
        """A connection to a checked address of ``host`` (each allowed one in turn)."""
        addrs = [host] if policy is None else await policy.connect_addresses(host, port)
        if tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        error: OSError | None = None
        for addr in addrs:
            try:
                return await asyncio.open_connection(
                    addr, port, ssl=self._ssl if tls else None,
                    server_hostname=host if tls else None)
            except OSError as e:
                error = e
        assert error is not None
        raise error

    async def _exchange(self, conn, request: bytes) -> tuple[int, bool]:
        reader, writer = conn
        writer.write(request)
        await writer.drain()
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            status = int(rest[:3])
            fields: dict[str, str] = {}
            for line in lines[1:]:
                k, sep, v = line.partition(":")
                if sep:
                    fields[k.strip().lower()] = v.strip()
            if not 100 <= status < 200:
                break
        keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        if "chunked" in fields.get("transfer-encoding", "").lower():
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                await reader.readexactly(size + 2)
        elif "content-length" in fields:
            n = int(fields["content-length"])
            if n > 1 << 20:  # not worth reading: drop the connection instead
                return status, False
            if n:
                await reader.readexactly(n)
        elif status not in (204, 304):
            await reader.read(1 << 20)  # the body ends with the connection
            keep = False
        return status, keep

    def _take(self, key):
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn, since = idle.pop()
            if now - since < self.IDLE_S and not conn[0].at_eof():
                return conn
            self._close(conn)
        return None

    @staticmethod
    def _close(conn) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn[1].close()

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn, _ in idle:
                self._close(conn)
        self._idle.clear()
