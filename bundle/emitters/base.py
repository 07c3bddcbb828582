"""The emitter seam: what one enforcement engine makes of the grants.

An emitter says which paths it owns (``roots``), renders its files from the
records and options (``render``), keeps its groups between incremental compiles
(``groups``) and states its limit (``budget``). The compiler, the incremental
compiler, CODEOWNERS and the policy repository iterate the registry
(``bundle.emitters``) and name no engine.

Most engines are a ``GroupedEmitter``: say how a record maps to (group, item)
pairs and how one group renders; the full render and the incremental groups
both come from that, so they cannot disagree. An engine whose groups depend on
more than one record at a time (Istio's ServiceEntries group hosts by the set
of ports every grant for the host asks for) writes its own ``Groups``.

``now`` reaches no emitter: the compiler hands each one the grants it carries at
``now`` (every open grant, or the ones valid now), and the bytes depend on
nothing else. That is what lets the incremental compiler keep a group's bytes
while time passes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from bundle.budget import Memo
from bundle.records import BundleOptions, GrantRecord

K = TypeVar("K", bound=Hashable)
# A group and an item of a GroupedEmitter: sortable (groups render in order, items sorted).
G = TypeVar("G", bound=Any)
I = TypeVar("I", bound=Any)  # noqa: E741 (the item type, beside G)
Files = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Emitted:
    """An emitter's output: its files (a later one wins a shared path), and why grants were left out."""

    files: Mapping[str, bytes]
    # MANIFEST.json's "skipped" entry for this emitter; None for an engine that carries every grant.
    skipped: Sequence[str] | None = None


class Groups(ABC):
    """One emitter's state between incremental compiles: what it keeps per group, and each group's files."""

    @abstractmethod
    def build(self, records: Sequence[GrantRecord]) -> None:
        """From nothing: the records this emitter sees (what ``apply`` adds, record by record, done at once)."""

    @abstractmethod
    def apply(self, record: GrantRecord, adding: bool) -> None:
        """A record enters (``adding``) or leaves what this emitter sees: mark the groups it changes."""

    @abstractmethod
    def emitted(self) -> Emitted:
        """Render the groups that changed since the last call; every file, as ``Emitter.render`` gives them."""


class Emitter(ABC):
    """An enforcement engine's part of the bundle."""

    # Its key in the registry and in MANIFEST.json ("skipped").
    name: ClassVar[str]
    # The top-level directories it writes, and under teams/<team>/ for a team's fragments.
    # A full publish replaces everything under them; CODEOWNERS gives them to the security team.
    roots: ClassVar[tuple[str, ...]]
    # True: the engine compares a grant's window with its own clock (OPA), so it gets every
    # open grant, scheduled ones included. False: it has no clock and gets the grants valid now.
    checks_time: ClassVar[bool] = False

    def budget(self, options: BundleOptions) -> int | None:
        """The most bytes one of its files may hold (the compiler refuses a bundle over it); None: no limit."""
        return None

    @abstractmethod
    def render(self, records: Sequence[GrantRecord], options: BundleOptions, memo: Memo | None = None) -> Emitted:
        """Every file, from the records it sees (sorted by id). With ``memo``, reuse unchanged objects."""

    @abstractmethod
    def groups(self, options: BundleOptions) -> Groups:
        """A fresh incremental state: after any sequence of ``apply`` its output equals ``render``'s."""

    def counts(self, files: Mapping[str, bytes]) -> dict[str, int]:
        """Its entries of MANIFEST.json's "counts" (names unique across emitters), from its files."""
        return {}

    def stamp(self, revision: str) -> dict[str, bytes]:
        """Files that carry the bundle's revision, written once it is known (left out of it)."""
        return {}


class GroupedEmitter(Emitter, Generic[G, I]):
    """An engine whose objects are groups of items, each item coming from one record.

    ``items`` maps a record to (group, item) pairs; a group renders from its
    distinct items, sorted, and only when that set changed. Groups render in
    sorted order, so a later group wins a path two of them share.
    """

    def unsupported(self, record: GrantRecord) -> str:
        """Why this engine cannot carry the grant ("" when it can): listed in MANIFEST.json."""
        return ""

    @abstractmethod
    def items(self, record: GrantRecord) -> Iterable[tuple[G, I]]:
        """The (group, item) pairs a supported record contributes."""

    @abstractmethod
    def render_group(self, group: G, items: Sequence[I], options: BundleOptions, memo: Memo | None = None) -> Files:
        """One group's files, ``[(path, bytes)]``, from its distinct items in sorted order."""

    def render(self, records: Sequence[GrantRecord], options: BundleOptions, memo: Memo | None = None) -> Emitted:
        unsupported, items = self.unsupported, self.items
        groups: dict[G, set[I]] = {}
        skipped: set[str] = set()
        for record in records:
            reason = unsupported(record)
            if reason:
                skipped.add(reason)
                continue
            for group, item in items(record):
                members = groups.get(group)
                if members is None:
                    members = groups[group] = set()
                members.add(item)
        files: dict[str, bytes] = {}
        for group in sorted(groups):
            files.update(self.render_group(group, sorted(groups[group]), options, memo))
        return Emitted(files, sorted(skipped))

    def groups(self, options: BundleOptions) -> Groups:
        return ItemGroups(self, options)


class Counted(dict[K, int]):
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

    def count(self, key: K, adding: bool) -> bool:
        return self.add(key) if adding else self.discard(key)


class GroupFiles(Generic[G]):
    """Per group: the files it rendered last; ``dirty`` names the groups to render again."""

    def __init__(self) -> None:
        self.files: dict[G, Files] = {}
        self.dirty: set[G] = set()

    def assembled(self, files: dict[str, bytes]) -> None:
        """Every group's files into ``files``, in sorted group order (a later group wins a shared path)."""
        for group in sorted(self.files):
            files.update(self.files[group])


class ItemGroups(Groups, Generic[G, I]):
    """A ``GroupedEmitter``'s incremental state: each group's items, counted, and its files."""

    def __init__(self, emitter: GroupedEmitter[G, I], options: BundleOptions) -> None:
        self.emitter = emitter
        self.options = options
        self.items: dict[G, Counted[I]] = {}
        self.out: GroupFiles[G] = GroupFiles()
        self.skipped: Counted[str] = Counted()

    def build(self, records: Sequence[GrantRecord]) -> None:
        unsupported, items, groups, skipped = self.emitter.unsupported, self.emitter.items, self.items, self.skipped
        for record in records:
            reason = unsupported(record)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            for group, item in items(record):
                counted = groups.get(group)
                if counted is None:
                    counted = groups[group] = Counted()
                counted[item] = counted.get(item, 0) + 1
        self.out.dirty.update(groups)

    def apply(self, record: GrantRecord, adding: bool) -> None:
        reason = self.emitter.unsupported(record)
        if reason:
            self.skipped.count(reason, adding)
            return
        for group, item in self.emitter.items(record):
            counted = self.items.setdefault(group, Counted())
            if counted.count(item, adding):
                self.out.dirty.add(group)

    def emitted(self) -> Emitted:
        out = self.out
        for group in out.dirty:
            items = self.items.get(group)
            if items:
                out.files[group] = list(self.emitter.render_group(group, sorted(items), self.options))
            else:
                self.items.pop(group, None)
                out.files.pop(group, None)
        out.dirty.clear()
        files: dict[str, bytes] = {}
        out.assembled(files)
        return Emitted(files, sorted(self.skipped))
