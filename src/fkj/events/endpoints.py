"""Where rest-hook notifications may be sent: the defence against server-side request forgery
through ``Subscription.channel.endpoint``.

The platform POSTs to any address a subscriber names, with headers the subscriber chose, from
inside the operator's network. Unchecked, that reaches the platform itself, the database,
cloud metadata services and every internal host, and the subscription's status (active or
error) tells the subscriber which ports answer. So an endpoint must pass this policy twice:

1. **When the Subscription is written** (:meth:`EndpointPolicy.problem`, a 422 on
   ``Subscription.channel.endpoint``): ``https`` (``http`` only in demo/dev or when the
   operator allows it), a host name, no user name or password in the URL, not ``localhost``
   or the platform's own host, and a literal address (in any of the notations
   ``inet_aton`` accepts: ``2130706433``, ``0177.1`` …) must be allowed. Host names are
   *not* resolved here (that would tell the writer what internal names resolve to).
2. **Every time a connection is opened** (:meth:`EndpointPolicy.connect_addresses`): the
   name is resolved once, each address is checked, and the connection goes to the checked
   address itself (TLS still verifies the certificate for the host name) — a second lookup
   that could answer differently (DNS rebinding) never happens.

An address is allowed when it is globally routable (not loopback, private, link-local,
shared/CGNAT, multicast, unspecified, reserved, documentation …, also inside IPv4-mapped,
6to4 and Teredo IPv6 addresses) and is not the platform's own address (its base URL's host
and port). The operator can allow more: ``FKJ_EVENTS_ALLOW_PRIVATE=1`` (any non-global
address except the platform's own) or ``FKJ_EVENTS_ALLOWED_NETWORKS`` (host names and
CIDR blocks that are always allowed, e.g. ``10.20.0.0/16,hooks.intern.kommune.no``).

A refused address is reported to the subscriber exactly like any other failed delivery (see
:data:`GENERIC_ERROR`); the reason goes to the server log only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["GENERIC_ERROR", "EndpointPolicy", "EndpointRefused"]

#: what a subscriber learns about any failed delivery (refused, unreachable, timed out,
#: TLS failure, an address the policy forbids, an HTTP error …)
GENERIC_ERROR = "delivery to the endpoint is failing; retrying"

#: seconds the addresses of the platform's own host name are kept
OWN_TTL = 60.0

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class EndpointRefused(Exception):
    """No address of the endpoint may be connected to (the message is for the log)."""


def _literal(host: str) -> IP | None:
    """The address a host string denotes as a literal, in any notation the C library
    accepts (``127.1``, ``0x7f.1``, ``2130706433``, ``[::1]`` …); None for a name."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except OSError:
        return None


def _embedded(ip: IP) -> list[IP]:
    """The address and the IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo)."""
    out: list[IP] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        for v4 in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if v4 is not None:
                out.append(v4)
        if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64
            out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def _global(ip: IP) -> bool:
    return all(x.is_global and not x.is_multicast for x in _embedded(ip))


def _norm_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (one lookup through the system resolver)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for *_, sockaddr in infos:
        if sockaddr[0] not in out:
            out.append(sockaddr[0])
    return out


@dataclass
class EndpointPolicy:
    #: plain http allowed (demo/dev, or the operator's choice)
    allow_http: bool = False
    #: non-global addresses allowed (loopback, private …), the platform's own still not
    allow_private: bool = False
    #: host names and CIDR blocks always allowed (the operator's list)
    allowed: tuple[str, ...] = ()
    #: the platform's public base URL (its host and port are never a notification target)
    base_url: str = ""
    resolver: Resolver = system_resolver
    _nets: list = field(default_factory=list, init=False, repr=False)
    _names: set[str] = field(default_factory=set, init=False, repr=False)
    _own: tuple[str, int] | None = field(default=None, init=False, repr=False)
    #: the addresses of the platform's own host name, and when they were looked up
    _own_ips: tuple[float, set[str]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for entry in self.allowed:
            entry = entry.strip()
            if not entry:
                continue
            try:
                self._nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._names.add(_norm_host(entry))
        try:
            parts = urlsplit(self.base_url)
            if parts.hostname:
                self._own = (_norm_host(parts.hostname),
                             parts.port or (443 if parts.scheme == "https" else 80))
        except ValueError:
            self._own = None

    @classmethod
    def from_settings(cls, *, allow_http: bool, allow_private: bool, allowed: str | tuple,
                      base_url: str, resolver: Resolver | None = None) -> EndpointPolicy:
        if isinstance(allowed, str):
            allowed = tuple(x for x in allowed.replace(";", ",").split(",") if x.strip())
        return cls(allow_http=allow_http, allow_private=allow_private, allowed=tuple(allowed),
                   base_url=base_url, resolver=resolver or system_resolver)

    # ------------------------------------------------------------------ decisions
    def _listed(self, ip: IP) -> bool:
        return any(x in net for x in _embedded(ip) for net in self._nets
                   if x.version == net.version)

    def _is_own(self, ip: IP, port: int, own_ips: set[str]) -> bool:
        return self._own is not None and port == self._own[1] and \
            any(str(x) in own_ips for x in _embedded(ip))

    def address_allowed(self, ip: IP, port: int, own_ips: set[str] = frozenset()) -> bool:
        if self._listed(ip):
            return True
        if self._is_own(ip, port, own_ips):
            return False
        return _global(ip) or self.allow_private

    def problem(self, url: str) -> str | None:
        """Why ``url`` may not be a rest-hook endpoint (None: it may, as far as can be told
        without resolving its name)."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            return "channel.endpoint is not a valid URL"
        if parts.scheme not in ("http", "https") or not host:
            return "a rest-hook channel needs an http(s) channel.endpoint"
        if parts.scheme == "http" and not self.allow_http:
            return "channel.endpoint must use https"
        if parts.username is not None or parts.password is not None:
            return ("channel.endpoint may not carry a user name or password; send "
                    "credentials in channel.header (kept secret)")
        port = port or (443 if parts.scheme == "https" else 80)
        name = _norm_host(host)
        if name in self._names:
            return None
        ip = _literal(name)
        if ip is not None:
            own = {self._own[0]} if self._own is not None and _literal(self._own[0]) else set()
            if self.address_allowed(ip, port, {str(_literal(x)) for x in own}):
                return None
            return f"channel.endpoint {host} is not an address notifications may be sent to"
        if self._own is not None and name == self._own[0]:
            return "channel.endpoint may not be the platform itself"
        if (name == "localhost" or name.endswith(".localhost")) and not self.allow_private:
            return f"channel.endpoint {host} is not an address notifications may be sent to"
        return None

    async def connect_addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` a connection may go to, from one lookup; raises
        :class:`EndpointRefused` when there is none."""
        name = _norm_host(host)
        ip = _literal(name)
        addrs = [str(ip)] if ip is not None else await self.resolver(host, port)
        if name in self._names:
            return addrs
        own_ips: set[str] = set()
        if self._own is not None:
            own_ip = _literal(self._own[0])
            if own_ip is not None:
                own_ips = {str(own_ip)}
            elif name == self._own[0]:
                raise EndpointRefused(f"{host} is the platform itself")
            else:
                own_ips = await self._own_addresses()
        ok = []
        for a in addrs:
            try:
                parsed = ipaddress.ip_address(a.split("%", 1)[0])
            except ValueError:
                continue
            if self.address_allowed(parsed, port, own_ips):
                ok.append(a)
        if not ok:
            raise EndpointRefused(f"{host} resolves to {', '.join(addrs) or 'nothing'}, "
                                  "not an address notifications may be sent to")
        return ok

    async def _own_addresses(self) -> set[str]:
        held = self._own_ips
        if held is not None and time.monotonic() - held[0] < OWN_TTL:
            return held[1]
        assert self._own is not None
        try:
            ips = set(await self.resolver(*self._own))
        except OSError:  # the base URL's name does not resolve here: nothing to exclude
            ips = set()
        self._own_ips = (time.monotonic(), ips)
        return ips
