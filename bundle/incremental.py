"""The bundle compiled from what changed: the same bytes as ``compile_bundle``, without walking every grant.

``IncrementalCompiler`` remembers the records of its last compile and, per
registered emitter, its incremental groups (``Emitter.groups``): an OPA shard,
a Cilium workload, an Istio ServiceEntry group or source namespace, and so on.
A compile diffs the new records by id (a record is immutable: the same object,
or an equal one, is the same grant), takes the grants whose state flipped since
the last ``now`` (a scheduled grant going live, a grant expiring: an engine
without a clock carries only the grants valid at ``now``, one that checks the
time every open one) from a heap of the times they flip at, hands each emitter
the records entering or leaving what it sees, and lets it re-render only the
groups whose inputs changed. The team counts and the assembly of the manifest
are the full compiler's own code.

A change of options or of the registered emitters, a ``now`` earlier than the
last one, or ``full=True`` starts again from nothing: that is a full compile,
with the same bytes. Not thread-safe: one compile at a time (the publisher
holds its lock).
"""

from __future__ import annotations

import gc
import heapq
import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime

from bundle.compiler import Bundle, Parts, assemble, digest
from bundle.emitters import Emitter, Groups, registered
from bundle.emitters.base import Counted
from bundle.records import BundleOptions, GrantRecord

CLOSED, SCHEDULED, LIVE = 0, 1, 2


def state(record: GrantRecord, now: datetime) -> int:
    if record.expires_at <= now:
        return CLOSED
    return LIVE if record.valid_from <= now else SCHEDULED


class IncrementalCompiler:
    def __init__(self) -> None:
        self.options: BundleOptions | None = None
        self.emitters: tuple[Emitter, ...] = ()
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
        # Per emitter, its groups: those that get every open grant, and those that get the live ones.
        self._groups: list[tuple[Emitter, Groups]] = []
        self._open_groups: list[Groups] = []
        self._live_groups: list[Groups] = []
        self._identities: Counted[str] = Counted()
        self._team_grants: Counted[str] = Counted()
        self._team_identities: dict[str, Counted[str]] = {}
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
        emitters = registered()
        by_id = records if isinstance(records, Mapping) else _by_id(records)
        collecting = gc.isenabled()
        gc.disable()  # as compile_bundle: many small acyclic objects
        try:
            if full or options != self.options or emitters != self.emitters or self.now is None or now < self.now:
                self._clear()
                self.options, self.emitters, self.now = options, emitters, now
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

    def _build(self, by_id: Mapping[int, GrantRecord], now: datetime) -> None:
        """From nothing: what ``_apply`` adds, record by record, done in a few tight loops."""
        assert self.options is not None
        self.records = dict(by_id)
        self.now = now
        opened, identities = self._open, self._identities
        team_grants, team_identities = self._team_grants, self._team_identities
        live: list[GrantRecord] = []
        events: list[tuple[datetime, int, int, GrantRecord]] = []
        sequence = self._sequence
        for i, record in by_id.items():
            if record.valid_from > now:
                events.append((record.valid_from, next(sequence), i, record))
            if record.expires_at <= now:
                continue
            events.append((record.expires_at, next(sequence), i, record))
            opened[i] = record
            identities[record.identity] = identities.get(record.identity, 0) + 1
            if record.team:
                team_grants[record.team] = team_grants.get(record.team, 0) + 1
                counted = team_identities.get(record.team)
                if counted is None:
                    counted = team_identities[record.team] = Counted()
                counted[record.identity] = counted.get(record.identity, 0) + 1
            if record.valid_from <= now:
                live.append(record)
        heapq.heapify(events)
        self._events = events
        self._live = len(live)
        open_records = list(opened.values())
        for emitter in self.emitters:
            groups = emitter.groups(self.options)
            self._groups.append((emitter, groups))
            (self._open_groups if emitter.checks_time else self._live_groups).append(groups)
            groups.build(open_records if emitter.checks_time else live)

    def _schedule(self, record: GrantRecord, now: datetime, into: list[tuple[datetime, int, int, GrantRecord]]) -> None:
        for moment in (record.valid_from, record.expires_at):
            if moment > now:
                into.append((moment, next(self._sequence), record.id, record))

    def _apply(self, record: GrantRecord, at: int, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) what a record in state ``at`` contributes."""
        if at == CLOSED:
            return
        adding = sign > 0
        if adding:
            self._open[record.id] = record
        else:
            del self._open[record.id]
        self._identities.count(record.identity, adding)
        if record.team:
            self._team_grants.count(record.team, adding)
            self._team_identities.setdefault(record.team, Counted()).count(record.identity, adding)
        for groups in self._open_groups:
            groups.apply(record, adding)
        if at == LIVE:
            self._live += sign
            for groups in self._live_groups:
                groups.apply(record, adding)

    # --- the bundle ---------------------------------------------------------------------

    def _bundle(self, options: BundleOptions) -> Bundle:
        self._used_digests = {}
        bundle = assemble(
            Parts(
                emitted=tuple((emitter, groups.emitted()) for emitter, groups in self._groups),
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


def _by_id(records: Iterable[GrantRecord]) -> dict[int, GrantRecord]:
    listed = list(records)
    by_id = {record.id: record for record in listed}
    if len(by_id) != len(listed):
        raise ValueError("records: two records share an id; a grant id names one grant")
    return by_id
