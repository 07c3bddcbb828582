"""Cilium: one CiliumNetworkPolicy per Kubernetes workload, toFQDNs plus the DNS rule."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from exceptions.bundle.kubernetes import resource_name, to_yaml
from exceptions.bundle.records import BundleOptions, GrantRecord


def policy(
    namespace: str, service_account: str, grants: Sequence[GrantRecord], options: BundleOptions
) -> dict[str, Any]:
    by_port: dict[tuple[int, str], set[str]] = defaultdict(set)
    for grant in grants:
        by_port[(grant.port, grant.protocol)].add(grant.host)
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
            "name": resource_name("egress", service_account),
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


def emit(records: Sequence[GrantRecord], options: BundleOptions) -> tuple[dict[str, bytes], list[str]]:
    """Files by path, and the identities skipped because they are not Kubernetes workloads."""
    workloads: dict[tuple[str, str], list[GrantRecord]] = defaultdict(list)
    skipped: set[str] = set()
    for record in records:
        if record.is_kubernetes:
            workloads[(record.namespace, record.service_account)].append(record)
        else:
            skipped.add(record.identity)
    files = {
        f"cilium/{namespace}/{resource_name('egress', sa)}.yaml": to_yaml(policy(namespace, sa, grants, options))
        for (namespace, sa), grants in sorted(workloads.items())
    }
    return files, sorted(skipped)
