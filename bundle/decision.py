"""The decision contract, in Python. ``policy.rego`` implements the same rules;
the conformance tests hold the two to identical answers.

Allowed iff an open grant exists for the identity whose host matches (exact, or
a ``*.suffix`` grant matching exactly one extra label, never the bare suffix),
with the same port and protocol, and ``valid_from <= now < expires_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from bundle.records import GrantRecord, rfc3339, to_ns

POLICY_PATH = "data.egress.decision"

# Reason templates shared with the Rego policy (sprintf with %v).
REASON_ALLOW = "grant {id} allows {identity} to reach {host}:{port}/{protocol} until {expires_at}"
REASON_NOT_DNS = "{host} is not a DNS name"
REASON_UNKNOWN_IDENTITY = "no grants for identity {identity}"
REASON_NO_HOST = "no grant for {identity} to reach {host}"
REASON_NO_PORT = "no grant for {identity} to reach {host} on port {port}/{protocol}"
REASON_NOT_NOW = "the grant for {identity} to reach {host} on port {port}/{protocol} is not valid now"

Index = Mapping[str, Mapping[str, Sequence[GrantRecord]]]


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str
    grant_id: int | None = None
    expires_at: str | None = None
    matched_host: str | None = None

    def as_contract(self) -> dict[str, Any]:
        return {"allow": self.allow, "reason": self.reason, "grant_id": self.grant_id, "expires_at": self.expires_at}


def build_index(records: Iterable[GrantRecord]) -> dict[str, dict[str, list[GrantRecord]]]:
    """identity → host → grants (sorted by id): a decision costs the same at any size."""
    index: dict[str, dict[str, list[GrantRecord]]] = {}
    for record in sorted(records, key=lambda r: r.id):
        index.setdefault(record.identity, {}).setdefault(record.host, []).append(record)
    return index


def normalise_host(host: str) -> str:
    lowered = host.lower()
    return lowered[:-1] if lowered.endswith(".") else lowered


def candidate_keys(host: str) -> list[str]:
    """The exact name and the one-label wildcard that would cover it."""
    keys = [host]
    labels = host.split(".")
    if len(labels) >= 2 and labels[0] != "":
        keys.append("*." + ".".join(labels[1:]))
    return keys


def as_address(host: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


def _holds(cidrs: Sequence[str], address: IPv4Address | IPv6Address) -> bool:
    return any(address in ip_network(cidr) for cidr in cidrs)


def _fmt(value: object) -> str:
    return str(value)


def decide(index: Index, *, identity: str, host: str, port: object, protocol: str | None, now_ns: int) -> Decision:
    host_n = normalise_host(host)
    protocol_n = (protocol or "tcp").lower()
    fields = {"identity": identity, "host": host_n, "port": _fmt(port), "protocol": protocol_n}
    if "*" in host_n:
        return Decision(False, REASON_NOT_DNS.format(**fields))
    by_host = index.get(identity)
    if by_host is None:
        return Decision(False, REASON_UNKNOWN_IDENTITY.format(**fields))
    candidates = [g for key in candidate_keys(host_n) for g in by_host.get(key, ())]
    address = as_address(host_n)
    if address is not None:
        # Provider-service grants: their current ranges, not a name, decide.
        candidates += [g for grants in by_host.values() for g in grants if g.cidrs and _holds(g.cidrs, address)]
    if not candidates:
        return Decision(False, REASON_NO_HOST.format(**fields))
    numeric = isinstance(port, int | float) and not isinstance(port, bool)  # JSON numbers only, as in Rego
    on_port = [g for g in candidates if numeric and g.port == port and g.protocol == protocol_n]
    if not on_port:
        return Decision(False, REASON_NO_PORT.format(**fields))
    live = [g for g in on_port if g.valid_from_ns <= now_ns < g.expires_at_ns]
    if not live:
        return Decision(False, REASON_NOT_NOW.format(**fields))
    latest = max(g.expires_at_ns for g in live)
    chosen = min((g for g in live if g.expires_at_ns == latest), key=lambda g: g.id)
    expires_at = rfc3339(chosen.expires_at)
    reason = REASON_ALLOW.format(
        id=chosen.id,
        identity=identity,
        host=chosen.host,
        port=chosen.port,
        protocol=chosen.protocol,
        expires_at=expires_at,
    )
    return Decision(True, reason, chosen.id, expires_at, chosen.host)


__all__ = ["POLICY_PATH", "Decision", "build_index", "candidate_keys", "decide", "normalise_host", "to_ns"]
