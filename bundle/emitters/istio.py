"""Istio: ServiceEntries grouped many hosts to an object, and the egress gateway's
AuthorizationPolicies, one per source namespace (split further under the budget).

Every object stays under ``BundleOptions.max_object_bytes`` (see ``budget``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from bundle.budget import Memo, SortedItems, fit_group, item_key
from bundle.emitters.base import Counted, Emitted, Emitter, GroupFiles, Groups
from bundle.kubernetes import quote, resource_name, team_root, to_yaml
from bundle.records import BundleOptions, GrantRecord

# ServiceEntry ports speak TCP-level protocols only; Istio has no UDP egress.
SUPPORTED = {"tcp"}
ANCHOR = "istio/authorizationpolicy.yaml"
# The CRDs' list limits (spec.hosts maxItems, spec.rules maxItems).
MAX_HOSTS = 256
MAX_RULES = 512

Ports = tuple[tuple[int, bool], ...]


def _port_name(port: int, tls: bool) -> str:
    return f"{'tls' if tls else 'tcp'}-{port}"


def service_entry_name(wildcard: bool, ports: Ports, prefix: str = "") -> str:
    """The group's name: resolution, then ports, then the split prefix (if split)."""
    signature = "-".join(_port_name(port, tls).replace("-", "") for port, tls in ports)
    return resource_name("egress", "sni" if wildcard else "dns", signature, *([prefix] if prefix else []))


def service_entry(hosts: Sequence[str], ports: Ports, options: BundleOptions, *, name: str) -> dict[str, Any]:
    wildcard = hosts[0].startswith("*.")
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {
            "name": name,
            "namespace": options.istio_namespace,
            "labels": {"app.kubernetes.io/managed-by": options.managed_by},
        },
        "spec": {
            "hosts": sorted(hosts),
            "location": "MESH_EXTERNAL",
            # Istio cannot DNS-resolve a wildcard; the gateway forwards by SNI.
            "resolution": "NONE" if wildcard else "DNS",
            "exportTo": ["*"],
            "ports": [
                {"number": port, "name": _port_name(port, tls), "protocol": "TLS" if tls else "TCP"}
                for port, tls in ports
            ],
        },
    }


SERVICE_ENTRY_HEAD = """apiVersion: "networking.istio.io/v1"
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
"""
SERVICE_ENTRY_TAIL = """  location: "MESH_EXTERNAL"
  ports:
{ports}  resolution: {resolution}
"""
PORT_YAML = """  - name: {name}
    number: {number}
    protocol: {protocol}
"""


def service_entry_yaml(hosts: Sequence[str], ports: Ports, options: BundleOptions, *, name: str) -> bytes:
    """``to_yaml(service_entry(...))``, rendered directly: a bundle can hold 1,000,000 hosts.

    The tests hold the two to the same bytes.
    """
    head = SERVICE_ENTRY_HEAD.format(
        managed_by=quote(options.managed_by), name=quote(name), namespace=quote(options.istio_namespace)
    )
    tail = SERVICE_ENTRY_TAIL.format(
        ports="".join(
            PORT_YAML.format(name=quote(_port_name(port, tls)), number=port, protocol=quote("TLS" if tls else "TCP"))
            for port, tls in ports
        ),
        resolution='"NONE"' if hosts[0].startswith("*.") else '"DNS"',
    )
    return "".join([head, *(f"  - {quote(host)}\n" for host in sorted(hosts)), tail]).encode("utf-8")


def principal(identity: str) -> str | None:
    """Istio principals are SPIFFE IDs without the scheme."""
    return identity[len("spiffe://") :] if identity.startswith("spiffe://") else None


def source_namespace(record: GrantRecord, name: str) -> str:
    """The Kubernetes namespace the caller runs in ("" when the identity names none)."""
    if record.namespace:
        return record.namespace
    parts = name.split("/")
    return parts[parts.index("ns") + 1] if "ns" in parts[:-1] else ""


def policy_name(namespace: str, prefix: str = "", team: str = "") -> str:
    scope = ("ns", namespace) if namespace else ("other",)
    return resource_name("egress-portal-allow", *([team] if team else []), *scope, *([prefix] if prefix else []))


Rule = tuple[str, int, str]  # principal, port, host


def authorization_policy(rules: Sequence[Rule], options: BundleOptions, *, name: str) -> dict[str, Any]:
    grouped: dict[tuple[str, int], set[str]] = defaultdict(set)
    for name_, port, host in rules:
        grouped[(name_, port)].add(host)
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {
            "name": name,
            "namespace": options.istio_namespace,
            "labels": {"app.kubernetes.io/managed-by": options.managed_by},
        },
        "spec": {
            "selector": {"matchLabels": dict(options.egress_gateway_labels)},
            # ALLOW policies add up. The anchor has no rules: with no grant at all
            # the gateway still has an ALLOW policy, so it denies everything.
            "action": "ALLOW",
            "rules": [
                {
                    "from": [{"source": {"principals": [rule_principal]}}],
                    "to": [{"operation": {"hosts": sorted(hosts), "ports": [str(port)]}}],
                }
                for (rule_principal, port), hosts in sorted(grouped.items())
            ],
        },
    }


def _host_size(host: str) -> int:
    return len(host) + 6


def _rule_size(rule: Rule) -> int:
    return len(rule[2]) + 8


def rule_key(rule: Rule) -> int:
    # The principal leads the key: a workload's rules stay together until it alone is too large.
    return (item_key(rule[0]) & ~0xFFFFFFFFFF) | (item_key(rule[1], rule[2]) & 0xFFFFFFFFFF)


def _few_hosts(hosts: Sequence[str]) -> bool:
    return len(hosts) <= MAX_HOSTS


def _few_rules(rules: Sequence[Rule]) -> bool:
    return len(rules) <= MAX_RULES or len({(name, port) for name, port, _ in rules}) <= MAX_RULES


def service_entry_files(
    wildcard: bool,
    ports: Ports,
    members: Sequence[str] | SortedItems[str],
    options: BundleOptions,
    memo: Memo | None = None,
) -> list[tuple[str, bytes]]:
    """The ServiceEntries of one group of hosts (same resolution, same ports), under the budget.

    ``members`` kept as ``SortedItems`` (keyed by ``item_key``) are split again only where they changed.
    """

    def entry(part: Sequence[str], prefix: str) -> bytes:
        return service_entry_yaml(part, ports, options, name=service_entry_name(wildcard, ports, prefix))

    context = ("serviceentry", wildcard, ports, options)
    budget = options.max_object_bytes
    # fit orders the hosts by key; the rendering sorts them
    parts = fit_group(
        members,
        key=item_key,
        render=entry,
        budget=budget,
        size=_host_size,
        allowed=_few_hosts,
        memo=memo,
        context=context,
    )
    return [
        (f"istio/serviceentries/{service_entry_name(wildcard, ports, prefix)}.yaml", data) for prefix, data in parts
    ]


@lru_cache(maxsize=8)
def anchor(options: BundleOptions) -> bytes:
    return to_yaml(authorization_policy([], options, name="egress-portal-allow"))


def authorization_files(
    team: str,
    namespace: str,
    rules: Sequence[Rule] | SortedItems[Rule],
    options: BundleOptions,
    memo: Memo | None = None,
) -> list[tuple[str, bytes]]:
    """The AuthorizationPolicies of one source namespace, under the budget.

    ``rules`` kept as ``SortedItems`` (keyed by ``rule_key``) are split again only where they changed.
    """

    def allow(part: Sequence[Rule], prefix: str) -> bytes:
        return to_yaml(authorization_policy(part, options, name=policy_name(namespace, prefix, team)))

    context = ("authorizationpolicy", team, namespace, options)
    budget = options.max_object_bytes
    parts = fit_group(
        rules,
        key=rule_key,
        render=allow,
        budget=budget,
        size=_rule_size,
        allowed=_few_rules,
        memo=memo,
        context=context,
    )
    return [
        (f"{team_root(team)}istio/authorizationpolicies/{policy_name(namespace, prefix, team)}.yaml", data)
        for prefix, data in parts
    ]


def signature(host_ports: set[tuple[int, bool]]) -> Ports:
    return tuple(host_ports) if len(host_ports) == 1 else tuple(sorted(host_ports))


Source = tuple[str | None, tuple[str, str]]  # the principal (None: not SPIFFE) and the policy group


def unsupported(record: GrantRecord) -> str:
    """Why Istio cannot carry this grant ("" when it can)."""
    if record.is_provider_service:
        return f"{record.identity} {record.service} (a provider service: Istio egress here is by name)"
    if record.protocol not in SUPPORTED:
        return f"{record.identity} {record.host}:{record.port}/{record.protocol} (Istio has no UDP egress)"
    return ""


def not_spiffe(record: GrantRecord) -> str:
    return f"{record.identity} (not a SPIFFE identity)"


def source(record: GrantRecord, sources: dict[tuple[str, str, str], Source]) -> Source:
    """The grant's principal and policy group; ``sources`` remembers them per workload."""
    key = (record.identity, record.team, record.namespace)
    found = sources.get(key)
    if found is None:
        name = principal(record.identity)
        group = (record.team, source_namespace(record, name)) if name is not None else ("", "")
        found = sources[key] = (name, group)
    return found


def emit(
    records: Sequence[GrantRecord], options: BundleOptions, memo: Memo | None = None
) -> tuple[dict[str, bytes], list[str]]:
    hosts: dict[str, set[tuple[int, bool]]] = defaultdict(set)
    rules: dict[tuple[str, str], set[Rule]] = defaultdict(set)
    skipped: set[str] = set()
    sources: dict[tuple[str, str, str], Source] = {}
    for record in records:
        reason = unsupported(record)
        if reason:
            skipped.add(reason)
            continue
        name, group = source(record, sources)
        if name is None:
            skipped.add(not_spiffe(record))
        else:
            rules[group].add((name, record.port, record.host))
        hosts[record.host].add((record.port, record.tls_required))
    groups: dict[tuple[bool, Ports], list[str]] = defaultdict(list)
    for host, host_ports in hosts.items():
        groups[(host.startswith("*."), signature(host_ports))].append(host)
    files: dict[str, bytes] = {}
    for (wildcard, ports), members in sorted(groups.items()):
        files.update(service_entry_files(wildcard, ports, members, options, memo))
    files[ANCHOR] = anchor(options)
    for (team, namespace), namespace_rules in sorted(rules.items()):
        files.update(authorization_files(team, namespace, sorted(namespace_rules), options, memo))
    return files, sorted(skipped)


class Istio(Emitter):
    """ServiceEntries under istio/, the egress gateway's AuthorizationPolicies (a team's under its directory)."""

    name = "istio"
    roots = ("istio",)

    def budget(self, options: BundleOptions) -> int:
        return options.max_object_bytes

    def render(self, records: Sequence[GrantRecord], options: BundleOptions, memo: Memo | None = None) -> Emitted:
        files, skipped = emit(records, options, memo)
        return Emitted(files, skipped)

    def groups(self, options: BundleOptions) -> Groups:
        return IstioGroups(options)

    def counts(self, files: Mapping[str, bytes]) -> dict[str, int]:
        return {
            "istio_service_entries": sum(path.startswith("istio/serviceentries/") for path in files),
            "istio_authorization_policies": sum("/authorizationpolicies/" in path for path in files),
        }


class IstioGroups(Groups):
    """Two kinds of group: a source namespace's rules, and the hosts sharing a resolution and a set of ports.

    A host's ServiceEntry group is its resolution and the set of ports of every
    grant for it, so a grant can move a host (and every other grant's port for
    it) from one group to another: no ``GroupedEmitter``, whose items come from
    one record each.
    """

    def __init__(self, options: BundleOptions) -> None:
        self.options = options
        self.host_ports: dict[str, Counted[tuple[int, bool]]] = {}
        self.entries: dict[tuple[bool, Ports], SortedItems[str]] = {}
        self.rules: dict[tuple[str, str], Counted[Rule]] = {}
        self.rule_items: dict[tuple[str, str], SortedItems[Rule]] = {}
        self.sources: dict[tuple[str, str, str], Source] = {}
        self.entry_files: GroupFiles[tuple[bool, Ports]] = GroupFiles()
        self.rule_files: GroupFiles[tuple[str, str]] = GroupFiles()
        self.skipped: Counted[str] = Counted()

    def build(self, records: Sequence[GrantRecord]) -> None:
        skipped, rules, sources, host_ports = self.skipped, self.rules, self.sources, self.host_ports
        for record in records:
            reason = unsupported(record)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            name, group = source(record, sources)
            if name is None:
                reason = not_spiffe(record)
                skipped[reason] = skipped.get(reason, 0) + 1
            else:
                counted = rules.setdefault(group, Counted())
                rule = (name, record.port, record.host)
                counted[rule] = counted.get(rule, 0) + 1
            ports = host_ports.setdefault(record.host, Counted())
            port = (record.port, record.tls_required)
            ports[port] = ports.get(port, 0) + 1
        for group, counted in rules.items():
            self.rule_items[group] = SortedItems.of(rule_key, counted)
        entries: dict[tuple[bool, Ports], list[str]] = {}
        for host, ports in host_ports.items():
            entries.setdefault((host.startswith("*."), signature(set(ports))), []).append(host)
        for entry, hosts in entries.items():
            self.entries[entry] = SortedItems.of(item_key, hosts)
        self.rule_files.dirty.update(rules)
        self.entry_files.dirty.update(self.entries)

    def apply(self, record: GrantRecord, adding: bool) -> None:
        reason = unsupported(record)
        if reason:
            self.skipped.count(reason, adding)
            return
        name, group = source(record, self.sources)
        if name is None:
            self.skipped.count(not_spiffe(record), adding)
        else:
            rules = self.rules.setdefault(group, Counted())
            rule = (name, record.port, record.host)
            if rules.count(rule, adding):
                items = self.rule_items.setdefault(group, SortedItems(rule_key))
                items.add(rule) if adding else items.remove(rule)
                self.rule_files.dirty.add(group)
        # A host's ServiceEntry group is its resolution and its set of ports.
        ports = self.host_ports.setdefault(record.host, Counted())
        port = (record.port, record.tls_required)
        if (port in ports) if adding else (ports[port] > 1):
            ports.count(port, adding)
            return
        wildcard = record.host.startswith("*.")
        if ports:
            before = (wildcard, signature(set(ports)))
            self.entries[before].remove(record.host)
            self.entry_files.dirty.add(before)
        ports.count(port, adding)
        if ports:
            after = (wildcard, signature(set(ports)))
            self.entries.setdefault(after, SortedItems(item_key)).add(record.host)
            self.entry_files.dirty.add(after)
        else:
            del self.host_ports[record.host]

    def emitted(self) -> Emitted:
        options = self.options
        for group in self.rule_files.dirty:
            rules = self.rule_items.get(group)
            if rules:
                self.rule_files.files[group] = authorization_files(group[0], group[1], rules, options)
            else:
                self.rules.pop(group, None)
                self.rule_items.pop(group, None)
                self.rule_files.files.pop(group, None)
        self.rule_files.dirty.clear()
        for entry in self.entry_files.dirty:
            hosts = self.entries.get(entry)
            if hosts:
                self.entry_files.files[entry] = service_entry_files(entry[0], entry[1], hosts, options)
            else:
                self.entries.pop(entry, None)
                self.entry_files.files.pop(entry, None)
        self.entry_files.dirty.clear()
        # The full render's order: entries, the anchor, then the policies.
        files: dict[str, bytes] = {}
        self.entry_files.assembled(files)
        files[ANCHOR] = anchor(options)
        self.rule_files.assembled(files)
        return Emitted(files, sorted(self.skipped))


ISTIO = Istio()
