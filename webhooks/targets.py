"""Where a webhook may be sent: public addresses only, unless an admin setting allows the rest.

Checked when a subscription is saved (the URL's shape, a literal address) and again
at every delivery, after DNS resolution, against every address the name resolves
to; the connection then goes to the address that was checked, so a name that
re-resolves to an internal address between check and connect (DNS rebinding)
cannot redirect it.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

# Cloud metadata services, named for the error message (all are non-global anyway).
METADATA_ADDRESSES = {"169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2"}


class TargetRefused(Exception):
    """The URL or the address it resolves to may not receive webhooks (``permanent``
    unless it is a name that did not resolve, which may resolve later)."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


def private_targets_allowed() -> bool:
    return bool(settings.EGRESS_WEBHOOK_ALLOW_PRIVATE_TARGETS)


# NAT64 (RFC 6052): the well-known prefix carries an IPv4 address in its last 32 bits; the
# local-use prefix (RFC 8215) reaches whatever its operator translates to, so it is refused whole.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo, IPv4-compatible).

    A packet to such an address reaches the IPv4 one through a translator or a
    tunnel, so the IPv4 address is what must be public.
    """
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in NAT64_WELL_KNOWN or (int(ip) >> 32 == 0 and int(ip) > 0xFFFF):  # ::a.b.c.d (IPv4-compatible)
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _own_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if str(ip) in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if not ip.is_global:
        return f"{ip} is a private or reserved address"
    return None


def address_problem(address: str) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE:
            return f"{ip} is a local-use NAT64 address"
        for inner in embedded_ipv4(ip):
            problem = _own_problem(inner)
            if problem is not None:
                return f"{ip} carries {inner}, and {problem}"
    return _own_problem(ip)


def check_url(url: str) -> None:
    """The shape a subscription URL must have (raises TargetRefused with the reason)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise TargetRefused("Use an http:// or https:// URL with a host name.")
    if parts.username or parts.password:
        raise TargetRefused("Put no credentials in the URL; the signature authenticates the portal.")
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        return
    problem = address_problem(parts.hostname)
    if problem and not private_targets_allowed():
        raise TargetRefused(
            f"{problem}; webhooks go to public addresses unless EGRESS_WEBHOOK_ALLOW_PRIVATE_TARGETS is set."
        )


def resolve(url: str) -> tuple[str, int, str]:
    """(scheme, port, address) to connect to, after checking every address the host resolves to."""
    check_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"{host} does not resolve: {exc}", permanent=False) from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    if not private_targets_allowed():
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise TargetRefused(
                    f"{host} resolves to {problem}; refused (EGRESS_WEBHOOK_ALLOW_PRIVATE_TARGETS is off)."
                )
    return parts.scheme, port, addresses[0]
