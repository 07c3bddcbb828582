"""The bundle compiled from what changed: the same bytes as ``compile_bundle``, without walking every grant.

``IncrementalCompiler`` remembers the records of its last compile and, per
group, what the emitters made of them: an OPA shard, a Cilium workload (names
and provider ranges), an Istio ServiceEntry group (resolution and ports), an
Istio source namespace, the team counts. A compile diffs the new records by id
(a record is immutable: the same object, or an equal one, is the same grant),
takes the grants whose state flipped since the last ``now`` (a scheduled grant
going live, a grant expiring: Cilium and Istio carry only the grants valid at
``now``, OPA every open one) from a heap of the times they flip at, and
re-renders only the groups whose inputs changed. Everything else, and the
assembly of the manifest, is the full compiler's own code.

A change of options, a ``now`` earlier than the last one, or ``full=True``
starts again from nothing: that is a full compile, with the same bytes.
Not thread-safe: one compile at a time (the publisher holds its lock).
"""

from __future__ import annotations

import gc
import heapq
import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping
from datetime import datetime
from typing import Generic, TypeVar

from exceptions.bundle import cilium, istio, opa
from exceptions.bundle.budget import SortedItems, item_key
from exceptions.bundle.compiler import Bundle, Parts, assemble, digest
from exceptions.bundle.records import BundleOptions, GrantRecord

CLOSED, SCHEDULED, LIVE = 0, 1, 2

K = TypeVar("K", bound=Hashable)
G = TypeVar("G", tuple[str, str, str], tuple[str, str], tuple[bool, istio.Ports])
Files = list[tuple[str, bytes]]


def state(record: GrantRecord, now: datetime) -> int:
    if record.expires_at <= now:
        return CLOSED
    return LIVE if record.valid_from <= now else SCHEDULED


class _Counted(dict[K, int]):
    """A multiset: ``add`` and ``discard`` say whether the set of distinct keys changed."""

    def add(self, key: K) -> bool:
        count = self.get(key, 0)
        self[key] = count + 1
        return count == 0

    def discard(self, key: K) -> bool:
        count = self[key] - 1
        if count:
            self[key] = count
            return False
        del self[key]
        return True


class _Groups(Generic[G]):
    """Per group: the files it rendered last; ``dirty`` names the groups to render again."""

    def __init__(self) -> None:
        self.files: dict[G, Files] = {}
        self.dirty: set[G] = set()

    def render(self, group: G, render: Callable[[], Files] | None) -> None:
        """Render ``group`` again (``render`` None: the group is gone)."""
        if render is None:
            self.files.pop(group, None)
        else:
            self.files[group] = render()

    def assembled(self, files: dict[str, bytes]) -> None:
        """Every group's files into ``files``, in the full compiler's order (a later group wins a shared path)."""
        for group in sorted(self.files):
            files.update(self.files[group])


class IncrementalCompiler:
    def __init__(self) -> None:
        self.options: BundleOptions | None = None
        self.now: datetime | None = None
        self.compiles = 0
        self.full_compiles = 0
        self._clear()

    def _clear(self) -> None:
        self._fresh = True
        self.records: dict[int, GrantRecord] = {}
        self._open: dict[int, GrantRecord] = {}
        self._live = 0
        # (time, sequence, id, record): when a record's state flips; stale once the record is gone.
        self._events: list[tuple[datetime, int, int, GrantRecord]] = []
        self._sequence = itertools.count()
        # OPA
        self._shards: dict[str, dict[int, GrantRecord]] = {}
        self._dirty_shards: set[str] = set()
        self._shard_files: dict[str, bytes] = {}
        self._identities: _Counted[str] = _Counted()
        self._identities_changed = True
        self._shard_map = b""
        # Cilium
        self._workloads: dict[tuple[str, str, str], _Counted[cilium.Destination]] = {}
        self._ranges: dict[tuple[str, str, str], _Counted[cilium.Destination]] = {}
        self._cilium_names: _Groups[tuple[str, str, str]] = _Groups()
        self._cilium_ranges: _Groups[tuple[str, str, str]] = _Groups()
        self._cilium_skipped: _Counted[str] = _Counted()
        # Istio
        self._host_ports: dict[str, _Counted[tuple[int, bool]]] = {}
        self._entries: dict[tuple[bool, istio.Ports], SortedItems[str]] = {}
        self._rules: dict[tuple[str, str], _Counted[istio.Rule]] = {}
        self._rule_items: dict[tuple[str, str], SortedItems[istio.Rule]] = {}
        self._sources: dict[tuple[str, str, str], istio.Source] = {}
        self._istio_entries: _Groups[tuple[bool, istio.Ports]] = _Groups()
        self._istio_rules: _Groups[tuple[str, str]] = _Groups()
        self._istio_skipped: _Counted[str] = _Counted()
        # Teams
        self._team_grants: _Counted[str] = _Counted()
        self._team_identities: dict[str, _Counted[str]] = {}
        # id(bytes) -> (bytes, digest) of the last bundle's files (the bytes kept: no id is reused).
        self._digests: dict[int, tuple[bytes, str]] = {}
        self._used_digests: dict[int, tuple[bytes, str]] = {}

    # --- the one public operation ----------------------------------------------

    def compile(
        self,
        records: Iterable[GrantRecord] | Mapping[int, GrantRecord],
        *,
        now: datetime,
        options: BundleOptions | None = None,
        full: bool = False,
    ) -> Bundle:
        """The bundle of ``records`` at ``now``: byte for byte ``compile_bundle(records, now=now, options=options)``.

        ``records`` by id, or any iterable of records with distinct ids.
        """
        options = options or BundleOptions()
        by_id = records if isinstance(records, Mapping) else _by_id(records)
        collecting = gc.isenabled()
        gc.disable()  # as compile_bundle: many small acyclic objects
        try:
            if full or options != self.options or self.now is None or now < self.now:
                self._clear()
                self.options, self.now = options, now
                self.full_compiles += 1
            self._update(by_id, now)
            self.compiles += 1
            return self._bundle(options)
        except BaseException:
            # Half-applied state would poison the next compile: start again then.
            self.options = self.now = None
            self._clear()
            raise
        finally:
            if collecting:
                gc.enable()

    # --- keeping the groups up to date ---------------------------------------------

    def _update(self, by_id: Mapping[int, GrantRecord], now: datetime) -> None:
        assert self.now is not None
        if self._fresh:
            self._fresh = False
            self._build(by_id, now)
            self._render()
            return
        before = self.now
        old = self.records
        touched: dict[int, GrantRecord | None] = dict.fromkeys(old.keys() - by_id.keys())
        # Most records are the very objects of the last compile: compare identities first.
        for i in [i for i, record in by_id.items() if old.get(i) is not record]:
            if old.get(i) != by_id[i]:
                touched[i] = by_id[i]
        # Grants whose state flips in (before, now]; a stale entry (the record left) is skipped.
        events = self._events
        while events and events[0][0] <= now:
            _, _, i, flipped = heapq.heappop(events)
            if old.get(i) is flipped and i not in touched:
                touched[i] = flipped
        scheduled: list[tuple[datetime, int, int, GrantRecord]] = []
        for i, new in touched.items():
            known = old.get(i)
            if known is not None:
                self._apply(known, state(known, before), -1)
            if new is None:
                del old[i]
                continue
            old[i] = new
            self._apply(new, state(new, now), +1)
            if known is not new:
                self._schedule(new, now, scheduled)
        self.now = now
        if len(events) + len(scheduled) > 4 * len(old) + 1024:
            # Entries of removed records pile up under churn: start from the records present.
            events.clear()
            scheduled.clear()
            for record in old.values():
                self._schedule(record, now, scheduled)
        if len(scheduled) > len(events):
            events.extend(scheduled)
            heapq.heapify(events)
        else:
            for event in scheduled:
                heapq.heappush(events, event)
        self._render()

    def _build(self, by_id: Mapping[int, GrantRecord], now: datetime) -> None:
        """From nothing: what ``_apply`` adds, record by record, done in a few tight loops."""
        self.records = dict(by_id)
        self.now = now
        shards, opened, identities = self._shards, self._open, self._identities
        team_grants, team_identities = self._team_grants, self._team_identities
        shard_of: dict[str, str] = {}
        live: list[GrantRecord] = []
        events: list[tuple[datetime, int, int, GrantRecord]] = []
        sequence = self._sequence
        for i, record in by_id.items():
            if record.valid_from > now:
                events.append((record.valid_from, next(sequence), i, record))
            if record.expires_at <= now:
                continue
            events.append((record.expires_at, next(sequence), i, record))
            identity = record.identity
            shard = shard_of.get(identity)
            if shard is None:
                shard = shard_of[identity] = opa.shard_of(identity)
            shards.setdefault(shard, {})[i] = record
            opened[i] = record
            identities[identity] = identities.get(identity, 0) + 1
            if record.team:
                team_grants[record.team] = team_grants.get(record.team, 0) + 1
                counted = team_identities.setdefault(record.team, _Counted())
                counted[identity] = counted.get(identity, 0) + 1
            if record.valid_from <= now:
                live.append(record)
        heapq.heapify(events)
        self._events = events
        self._dirty_shards.update(shards)
        self._identities_changed = True
        self._live = len(live)
        self._build_cilium(live)
        self._build_istio(live)

    def _build_cilium(self, live: list[GrantRecord]) -> None:
        skipped, workloads, ranges = self._cilium_skipped, self._workloads, self._ranges
        for record in live:
            reason = cilium.unsupported(record)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            if record.is_provider_service:
                counted = ranges.setdefault(cilium.workload(record), _Counted())
                for item in cilium.range_items(record):
                    counted[item] = counted.get(item, 0) + 1
            else:
                counted = workloads.setdefault(cilium.workload(record), _Counted())
                item = (record.port, record.protocol, record.host)
                counted[item] = counted.get(item, 0) + 1
        self._cilium_names.dirty.update(workloads)
        self._cilium_ranges.dirty.update(ranges)

    def _build_istio(self, live: list[GrantRecord]) -> None:
        skipped, rules, sources, host_ports = self._istio_skipped, self._rules, self._sources, self._host_ports
        for record in live:
            reason = istio.unsupported(record)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            name, group = istio.source(record, sources)
            if name is None:
                reason = istio.not_spiffe(record)
                skipped[reason] = skipped.get(reason, 0) + 1
            else:
                counted = rules.setdefault(group, _Counted())
                rule = (name, record.port, record.host)
                counted[rule] = counted.get(rule, 0) + 1
            ports = host_ports.setdefault(record.host, _Counted())
            port = (record.port, record.tls_required)
            ports[port] = ports.get(port, 0) + 1
        for group, counted in rules.items():
            self._rule_items[group] = SortedItems.of(istio.rule_key, counted)
        entries: dict[tuple[bool, istio.Ports], list[str]] = {}
        for host, ports in host_ports.items():
            entries.setdefault((host.startswith("*."), istio.signature(set(ports))), []).append(host)
        for entry, hosts in entries.items():
            self._entries[entry] = SortedItems.of(item_key, hosts)
        self._istio_rules.dirty.update(rules)
        self._istio_entries.dirty.update(self._entries)

    def _schedule(self, record: GrantRecord, now: datetime, into: list[tuple[datetime, int, int, GrantRecord]]) -> None:
        for moment in (record.valid_from, record.expires_at):
            if moment > now:
                into.append((moment, next(self._sequence), record.id, record))

    def _apply(self, record: GrantRecord, at: int, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) what a record in state ``at`` contributes."""
        if at == CLOSED:
            return
        adding = sign > 0
        # OPA: every open grant.
        shard = opa.shard_of(record.identity)
        members = self._shards.setdefault(shard, {})
        if adding:
            members[record.id] = record
            self._open[record.id] = record
        else:
            del members[record.id]
            del self._open[record.id]
        self._dirty_shards.add(shard)
        if self._identities.add(record.identity) if adding else self._identities.discard(record.identity):
            self._identities_changed = True
        if record.team:
            identities = self._team_identities.setdefault(record.team, _Counted())
            if adding:
                self._team_grants.add(record.team)
                identities.add(record.identity)
            else:
                self._team_grants.discard(record.team)
                identities.discard(record.identity)
        if at == LIVE:
            self._live += sign
            self._apply_cilium(record, adding)
            self._apply_istio(record, adding)

    def _apply_cilium(self, record: GrantRecord, adding: bool) -> None:
        reason = cilium.unsupported(record)
        if reason:
            _count(self._cilium_skipped, reason, adding)
            return
        workload = cilium.workload(record)
        if record.is_provider_service:
            groups, items, out = self._ranges, cilium.range_items(record), self._cilium_ranges
        else:
            groups, items, out = self._workloads, [(record.port, record.protocol, record.host)], self._cilium_names
        counted = groups.setdefault(workload, _Counted())
        changed = False
        for item in items:
            changed |= _count(counted, item, adding)
        if changed:
            out.dirty.add(workload)

    def _apply_istio(self, record: GrantRecord, adding: bool) -> None:
        reason = istio.unsupported(record)
        if reason:
            _count(self._istio_skipped, reason, adding)
            return
        name, group = istio.source(record, self._sources)
        if name is None:
            _count(self._istio_skipped, istio.not_spiffe(record), adding)
        else:
            rules = self._rules.setdefault(group, _Counted())
            rule = (name, record.port, record.host)
            if _count(rules, rule, adding):
                items = self._rule_items.setdefault(group, SortedItems(istio.rule_key))
                items.add(rule) if adding else items.remove(rule)
                self._istio_rules.dirty.add(group)
        # A host's ServiceEntry group is its resolution and its set of ports.
        ports = self._host_ports.setdefault(record.host, _Counted())
        port = (record.port, record.tls_required)
        if (port in ports) if adding else (ports[port] > 1):
            _count(ports, port, adding)
            return
        wildcard = record.host.startswith("*.")
        if ports:
            before = (wildcard, istio.signature(set(ports)))
            self._entries[before].remove(record.host)
            self._istio_entries.dirty.add(before)
        _count(ports, port, adding)
        if ports:
            after = (wildcard, istio.signature(set(ports)))
            self._entries.setdefault(after, SortedItems(item_key)).add(record.host)
            self._istio_entries.dirty.add(after)
        else:
            del self._host_ports[record.host]

    # --- rendering -------------------------------------------------------------------

    def _render(self) -> None:
        options = self.options
        assert options is not None
        for shard in self._dirty_shards:
            members = self._shards[shard]
            if members:
                self._shard_files[shard] = opa.shard_bytes(sorted(members.values(), key=_id))
            else:
                del self._shards[shard]
                self._shard_files.pop(shard, None)
        self._dirty_shards.clear()
        if self._identities_changed:
            self._shard_map = opa.shard_map(self._identities)
            self._identities_changed = False
        for kind, groups, out in (
            ("", self._workloads, self._cilium_names),
            (cilium.RANGES, self._ranges, self._cilium_ranges),
        ):
            for workload in out.dirty:
                items = groups.get(workload)
                if items:
                    out.render(
                        workload,
                        # Called at once, so the loop's variables are the ones meant.
                        lambda: cilium.workload_files(kind, sorted(items), *workload, options),  # noqa: B023
                    )
                else:
                    groups.pop(workload, None)
                    out.render(workload, None)
            out.dirty.clear()
        for group in self._istio_rules.dirty:
            rules = self._rule_items.get(group)
            if rules:
                self._istio_rules.render(
                    group,
                    lambda: istio.authorization_files(group[0], group[1], rules, options),  # noqa: B023
                )
            else:
                self._rules.pop(group, None)
                self._rule_items.pop(group, None)
                self._istio_rules.render(group, None)
        self._istio_rules.dirty.clear()
        for entry in self._istio_entries.dirty:
            hosts = self._entries.get(entry)
            if hosts:
                self._istio_entries.render(
                    entry,
                    lambda: istio.service_entry_files(entry[0], entry[1], hosts, options),  # noqa: B023
                )
            else:
                self._entries.pop(entry, None)
                self._istio_entries.render(entry, None)
        self._istio_entries.dirty.clear()

    def _bundle(self, options: BundleOptions) -> Bundle:
        opa_files = {**opa.static_files(), opa.DATA: self._shard_map}
        opa_files.update((opa.shard_path(shard), data) for shard, data in self._shard_files.items())
        # The full compiler's order: Cilium names then ranges; Istio entries, the anchor, then policies.
        cilium_files: dict[str, bytes] = {}
        self._cilium_names.assembled(cilium_files)
        self._cilium_ranges.assembled(cilium_files)
        istio_files: dict[str, bytes] = {}
        self._istio_entries.assembled(istio_files)
        istio_files[istio.ANCHOR] = istio.anchor(options)
        self._istio_rules.assembled(istio_files)
        self._used_digests = {}
        bundle = assemble(
            Parts(
                opa=opa_files,
                cilium=cilium_files,
                istio=istio_files,
                skipped={"cilium": sorted(self._cilium_skipped), "istio": sorted(self._istio_skipped)},
                grants=len(self._open),
                valid_now=self._live,
                identities=len(self._identities),
                team_grants=dict(self._team_grants),
                team_workloads={team: len(ids) for team, ids in self._team_identities.items() if ids},
                records=dict(self._open),
            ),
            options,
            self._digest,
        )
        self._digests, self._used_digests = self._used_digests, {}
        return bundle

    def _digest(self, data: bytes) -> str:
        # An unchanged group hands over the very bytes object it rendered last time.
        known = self._digests.get(id(data))
        if known is None or known[0] is not data:
            known = (data, digest(data))
        self._used_digests[id(data)] = known
        return known[1]


def _id(record: GrantRecord) -> int:
    return record.id


def _count(counted: _Counted[K], key: K, adding: bool) -> bool:
    return counted.add(key) if adding else counted.discard(key)


def _by_id(records: Iterable[GrantRecord]) -> dict[int, GrantRecord]:
    listed = list(records)
    by_id = {record.id: record for record in listed}
    if len(by_id) != len(listed):
        raise ValueError("records: two records share an id; a grant id names one grant")
    return by_id
