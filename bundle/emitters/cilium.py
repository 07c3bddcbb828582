"""Cilium: a CiliumNetworkPolicy per Kubernetes workload, toFQDNs plus the DNS rule.

A workload with very many grants gets several policies (Cilium adds them up),
each under the size budget and each with the DNS rule its toFQDNs need.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from bundle.budget import Memo, fit, item_key
from bundle.emitters.base import GroupedEmitter
from bundle.kubernetes import emit_lines, quote, resource_name, team_root, to_yaml
from bundle.records import BundleOptions, GrantRecord

Destination = tuple[int, str, str]  # port, protocol, host


def destinations(grants: Sequence[GrantRecord]) -> list[Destination]:
    return sorted({(grant.port, grant.protocol, grant.host) for grant in grants})


def policy_name(service_account: str, prefix: str = "") -> str:
    return resource_name("egress", service_account, *([prefix] if prefix else []))


def policy(
    namespace: str, service_account: str, grants: Sequence[Destination], options: BundleOptions, *, name: str = ""
) -> dict[str, Any]:
    by_port: dict[tuple[int, str], set[str]] = defaultdict(set)
    for port, protocol, host in grants:
        by_port[(port, protocol)].add(host)
    egress: list[dict[str, Any]] = [
        {
            # toFQDNs only works when the DNS proxy sees the lookups.
            "toEndpoints": [
                {"matchLabels": {"io.kubernetes.pod.namespace": options.dns_namespace, **dict(options.dns_labels)}}
            ],
            "toPorts": [
                {
                    "ports": [{"port": "53", "protocol": "ANY"}],
                    "rules": {"dns": [{"matchPattern": "*"}]},
                }
            ],
        }
    ]
    for (port, protocol), hosts in sorted(by_port.items()):
        egress.append(
            {
                "toFQDNs": [
                    {"matchPattern": host} if host.startswith("*.") else {"matchName": host} for host in sorted(hosts)
                ],
                "toPorts": [{"ports": [{"port": str(port), "protocol": protocol.upper()}]}],
            }
        )
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {
            "name": name or policy_name(service_account),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": options.managed_by},
        },
        "spec": {
            "endpointSelector": {
                "matchLabels": {
                    "io.kubernetes.pod.namespace": namespace,
                    "io.cilium.k8s.policy.serviceaccount": service_account,
                }
            },
            "egress": egress,
        },
    }


def dns_rule(options: BundleOptions) -> dict[str, Any]:
    return policy("-", "-", [], options)["spec"]["egress"][0]


@lru_cache(maxsize=8)
def _dns_rule_lines(options: BundleOptions) -> str:
    lines: list[str] = []
    emit_lines([dns_rule(options)], "  ", lines)
    return "\n".join(lines) + "\n"


def policy_yaml(
    namespace: str, service_account: str, grants: Sequence[Destination], options: BundleOptions, *, name: str = ""
) -> bytes:
    """``to_yaml(policy(...))``, rendered directly: a bundle holds a policy per workload.

    The tests hold the two to the same bytes.
    """
    by_port: dict[tuple[int, str], set[str]] = defaultdict(set)
    for port, protocol, host in grants:
        by_port[(port, protocol)].add(host)
    out = [
        'apiVersion: "cilium.io/v2"\nkind: "CiliumNetworkPolicy"\nmetadata:\n  labels:\n',
        f"    app.kubernetes.io/managed-by: {quote(options.managed_by)}\n",
        f"  name: {quote(name or policy_name(service_account))}\n  namespace: {quote(namespace)}\n",
        "spec:\n  egress:\n",
        _dns_rule_lines(options),
    ]
    for (port, protocol), hosts in sorted(by_port.items()):
        out.append("  - toFQDNs:\n")
        out.extend(
            f"    - {'matchPattern' if host.startswith('*.') else 'matchName'}: {quote(host)}\n"
            for host in sorted(hosts)
        )
        out.append(f"    toPorts:\n    - ports:\n      - port: {quote(str(port))}\n")
        out.append(f"        protocol: {quote(protocol.upper())}\n")
    out.append("  endpointSelector:\n    matchLabels:\n")
    out.append(f"      io.cilium.k8s.policy.serviceaccount: {quote(service_account)}\n")
    out.append(f"      io.kubernetes.pod.namespace: {quote(namespace)}\n")
    return "".join(out).encode("utf-8")


def _network_order(cidr: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(cidr)
    return (network.version, int(network.network_address), network.prefixlen)


def range_policy(
    namespace: str, service_account: str, ranges: Sequence[Destination], options: BundleOptions, *, name: str
) -> dict[str, Any]:
    """A workload's provider-service grants: ``toCIDRSet`` from the provider's current ranges."""
    by_port: dict[tuple[int, str], set[str]] = defaultdict(set)
    for port, protocol, cidr in ranges:
        by_port[(port, protocol)].add(cidr)
    document = policy(namespace, service_account, [], options, name=name)
    document["spec"]["egress"] = [
        {
            "toCIDRSet": [{"cidr": cidr} for cidr in sorted(cidrs, key=_network_order)],
            "toPorts": [{"ports": [{"port": str(port), "protocol": protocol.upper()}]}],
        }
        for (port, protocol), cidrs in sorted(by_port.items())
    ]
    return document


def _size(destination: Destination) -> int:
    return len(destination[2]) + 20


def _key(destination: Destination) -> int:
    return item_key(destination[2], destination[0], destination[1])


RANGES = "ranges"  # the kind of a workload's provider-range policy ("" for its names)


def workload_files(
    kind: str,
    items: Sequence[Destination],
    team: str,
    namespace: str,
    sa: str,
    options: BundleOptions,
    memo: Memo | None = None,
) -> list[tuple[str, bytes]]:
    """One workload's policy (or its parts under the budget) as ``[(path, bytes)]``."""

    def name(prefix: str) -> str:
        return resource_name("egress", sa, *([kind] if kind else []), *([prefix] if prefix else []))

    def render(part: Sequence[Destination], prefix: str) -> bytes:
        if kind:
            return to_yaml(range_policy(namespace, sa, part, options, name=name(prefix)))
        return policy_yaml(namespace, sa, part, options, name=name(prefix))

    return [
        (f"{team_root(team)}cilium/{namespace}/{name(prefix)}.yaml", data)
        for prefix, data in fit(
            items,
            key=_key,
            render=render,
            budget=options.max_object_bytes,
            size=_size,
            memo=memo,
            context=("cilium", kind, namespace, sa, options),
        )
    ]


Workload = tuple[str, str, str, str]  # kind ("" or RANGES), team, namespace, service account


class Cilium(GroupedEmitter[Workload, Destination]):
    """A policy per workload for its names, another for its provider services' ranges.

    The names of every workload render before any ranges (the group's kind leads
    its key), so a ranges policy wins a path a workload's own name could share.
    """

    name = "cilium"
    roots = ("cilium",)

    def budget(self, options: BundleOptions) -> int:
        return options.max_object_bytes

    def unsupported(self, record: GrantRecord) -> str:
        if not record.is_kubernetes:
            return record.identity
        if record.is_provider_service and not record.cidrs:
            return f"{record.identity} {record.service} (no ranges loaded for the service yet)"
        return ""

    def items(self, record: GrantRecord) -> list[tuple[Workload, Destination]]:
        if record.is_provider_service:
            group = (RANGES, record.team, record.namespace, record.service_account)
            return [(group, (record.port, record.protocol, cidr)) for cidr in record.cidrs]
        return [
            (("", record.team, record.namespace, record.service_account), (record.port, record.protocol, record.host))
        ]

    def render_group(
        self, group: Workload, items: Sequence[Destination], options: BundleOptions, memo: Memo | None = None
    ) -> list[tuple[str, bytes]]:
        kind, team, namespace, service_account = group
        return workload_files(kind, items, team, namespace, service_account, options, memo)

    def counts(self, files: Mapping[str, bytes]) -> dict[str, int]:
        return {"cilium_policies": len(files)}


CILIUM = Cilium()
