"""Where webhooks may go: never to this machine or the networks behind it, unless the operator
says so (``PAL_WEBHOOK_ALLOW_NETWORKS``).

An admin sets a project's ``webhook_url`` and the server POSTs to it; without a check that is a
request forgery tool against whatever the server can reach (cloud metadata at 169.254.169.254, the
database on localhost, the office network). The URL is checked twice:

- when it is saved (``refusal``): literal addresses in every spelling the resolver accepts
  (``2130706433``, ``0x7f.1``, ``0``, ``[::ffff:a9fe:a9fe]``), ``localhost`` names, and what the name
  resolves to at that moment;
- when an event is delivered (``GuardedBackend``): the name is resolved once, every address is
  checked, and the connection goes to a checked address. Checking and then letting the HTTP client
  resolve again would let a name that changes between the two lookups (DNS rebinding) through.

Internal means anything ``ipaddress`` does not call global (loopback, private, link-local, shared,
reserved, unspecified, documentation ranges) and multicast, also when an IPv4 address hides inside
an IPv6 one (mapped, 6to4, Teredo, NAT64).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def parse_networks(spec: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks; raises ValueError naming a bad entry."""
    networks = []
    for part in (p.strip() for p in spec.split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ValueError(f"{part!r} is not an IP address or network (e.g. 10.0.0.0/8)") from exc
    return tuple(networks)


def literal_ip(host: str) -> IPAddress | None:
    """The address a host names literally, as the system resolver reads it, or None for a name."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton takes the old spellings too (2130706433, 0x7f.1, 0177.0.0.1, 127.1, 0), and so
        # does getaddrinfo, which the HTTP client would use: read them the same way.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError):
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_internal(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and is_internal(inner):
            return True
    return not ip.is_global or ip.is_multicast


def address_refusal(ip: IPAddress, allow: Iterable[Network]) -> str | None:
    if not is_internal(ip) or any(ip.version == net.version and ip in net for net in allow):
        return None
    return (f"{ip} is an internal address (loopback, private, link-local or reserved); "
            "PAL_WEBHOOK_ALLOW_NETWORKS lists the internal networks webhooks may reach")


def resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))


def refusal(url: str, allow: Iterable[Network], *, lookup: bool = True) -> str | None:
    """Why ``url`` may not receive webhooks, or None. A name that does not resolve now is accepted
    (the receiver may not exist yet); delivery checks it again."""
    allow = tuple(allow)
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "has no host"
    ip = literal_ip(host)
    if ip is None and (host in LOCAL_NAMES or host.endswith(".localhost")):
        ip = ipaddress.IPv4Address("127.0.0.1")
    if ip is not None:
        return address_refusal(ip, allow)
    if not lookup:
        return None
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        return None
    return next((r for r in (address_refusal(a, allow) for a in addresses) if r), None)


class GuardedBackend(httpcore.SyncBackend):
    """Connects only to addresses the guard accepts: resolves the host itself, refuses when any of
    its addresses is internal, and connects to the checked address (TLS still verifies the name)."""

    def __init__(self, allow: Iterable[Network]) -> None:
        self.allow = tuple(allow)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            addresses = [literal_ip(host)] if literal_ip(host) is not None else resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        for ip in addresses:
            reason = address_refusal(ip, self.allow)  # type: ignore[arg-type]
            if reason:
                raise httpcore.ConnectError(f"refused: {host} resolves to {reason}")
        error: Exception | None = None
        for ip in addresses:
            try:
                return super().connect_tcp(str(ip), port, timeout=timeout, local_address=local_address,
                                           socket_options=socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address for {host}")


def guarded_client(allow: Iterable[Network], timeout: float) -> httpx.Client:
    """The webhook worker's HTTP client. No proxy from the environment (a proxy would make the
    guard check the proxy, not the receiver) and no redirects (a 3xx could point anywhere)."""
    transport = httpx.HTTPTransport()
    transport._pool._network_backend = GuardedBackend(allow)  # httpx has no public hook for this
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


def redact(url: str) -> str:
    """``url`` fit for a log line: no user or password, no query string (receivers put secrets in both)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<invalid url>"
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))
