"""Istio: a ServiceEntry per external host and the egress gateway's AuthorizationPolicy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from exceptions.bundle.kubernetes import quote, resource_name, to_yaml
from exceptions.bundle.records import BundleOptions, GrantRecord

# ServiceEntry ports speak TCP-level protocols only; Istio has no UDP egress.
SUPPORTED = {"tcp"}


def service_entry(host: str, ports: set[tuple[int, bool]], options: BundleOptions) -> dict[str, Any]:
    wildcard = host.startswith("*.")
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {
            "name": resource_name("egress", host),
            "namespace": options.istio_namespace,
            "labels": {"app.kubernetes.io/managed-by": options.managed_by},
        },
        "spec": {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            # Istio cannot DNS-resolve a wildcard; the gateway forwards by SNI.
            "resolution": "NONE" if wildcard else "DNS",
            "exportTo": ["*"],
            "ports": [
                {"number": port, "name": f"{'tls' if tls else 'tcp'}-{port}", "protocol": "TLS" if tls else "TCP"}
                for port, tls in sorted(ports)
            ],
        },
    }


SERVICE_ENTRY_YAML = """apiVersion: "networking.istio.io/v1"
kind: "ServiceEntry"
metadata:
  labels:
    app.kubernetes.io/managed-by: {managed_by}
  name: {name}
  namespace: {namespace}
spec:
  exportTo:
  - "*"
  hosts:
  - {host}
  location: "MESH_EXTERNAL"
  ports:
{ports}  resolution: {resolution}
"""
PORT_YAML = """  - name: {name}
    number: {number}
    protocol: {protocol}
"""


def service_entry_yaml(host: str, ports: set[tuple[int, bool]], options: BundleOptions) -> bytes:
    """``to_yaml(service_entry(...))``, rendered directly: a bundle can hold 100,000 of them.

    The tests hold the two to the same bytes.
    """
    return _service_entry_renderer(options.managed_by, options.istio_namespace)(host, ports)


@lru_cache(maxsize=8)
def _service_entry_renderer(managed_by: str, namespace: str) -> Callable[[str, set[tuple[int, bool]]], bytes]:
    template = SERVICE_ENTRY_YAML.replace("{managed_by}", quote(managed_by)).replace("{namespace}", quote(namespace))
    port_lines = {
        (port, tls): PORT_YAML.format(
            name=quote(f"{'tls' if tls else 'tcp'}-{port}"), number=port, protocol=quote("TLS" if tls else "TCP")
        )
        for port, tls in ((443, True), (443, False))
    }

    def render(host: str, ports: set[tuple[int, bool]]) -> bytes:
        lines = "".join(
            port_lines.get(p)
            or PORT_YAML.format(
                name=quote(f"{'tls' if p[1] else 'tcp'}-{p[0]}"), number=p[0], protocol=quote("TLS" if p[1] else "TCP")
            )
            for p in sorted(ports)
        )
        return template.format(
            name=quote(resource_name("egress", host)),
            host=quote(host),
            resolution='"NONE"' if host.startswith("*.") else '"DNS"',
            ports=lines,
        ).encode("utf-8")

    return render


def principal(identity: str) -> str | None:
    """Istio principals are SPIFFE IDs without the scheme."""
    return identity[len("spiffe://") :] if identity.startswith("spiffe://") else None


def authorization_policy(records: Sequence[GrantRecord], options: BundleOptions) -> dict[str, Any]:
    rules: dict[tuple[str, int], set[str]] = defaultdict(set)
    for record in records:
        name = principal(record.identity)
        if name and record.protocol in SUPPORTED:
            rules[(name, record.port)].add(record.host)
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {
            "name": "egress-portal-allow",
            "namespace": options.istio_namespace,
            "labels": {"app.kubernetes.io/managed-by": options.managed_by},
        },
        "spec": {
            "selector": {"matchLabels": dict(options.egress_gateway_labels)},
            # With no rules an ALLOW policy allows nothing: default deny at the gateway.
            "action": "ALLOW",
            "rules": [
                {
                    "from": [{"source": {"principals": [name]}}],
                    "to": [{"operation": {"hosts": sorted(hosts), "ports": [str(port)]}}],
                }
                for (name, port), hosts in sorted(rules.items())
            ],
        },
    }


def emit(records: Sequence[GrantRecord], options: BundleOptions) -> tuple[dict[str, bytes], list[str]]:
    hosts: dict[str, set[tuple[int, bool]]] = defaultdict(set)
    skipped: set[str] = set()
    for record in records:
        if record.protocol not in SUPPORTED:
            skipped.add(f"{record.identity} {record.host}:{record.port}/{record.protocol} (Istio has no UDP egress)")
            continue
        if principal(record.identity) is None:
            skipped.add(f"{record.identity} (not a SPIFFE identity)")
        hosts[record.host].add((record.port, record.tls_required))
    files = {
        f"istio/serviceentries/{resource_name('egress', host)}.yaml": service_entry_yaml(host, ports, options)
        for host, ports in sorted(hosts.items())
    }
    files["istio/authorizationpolicy.yaml"] = to_yaml(authorization_policy(records, options))
    return files, sorted(skipped)
