"""Keep every Kubernetes object under a size budget, with grouping that stays put.

etcd refuses objects over 1.5 MiB (and ``kubectl apply`` stores a second copy in
an annotation), and the CRDs cap some lists (a ServiceEntry holds at most 256
hosts, an AuthorizationPolicy 512 rules). A group of items that renders too
large, or holds too many, is halved by one bit of a 64-bit hash of each item's
key, then halved again where still needed: a binary trie whose leaves are the
objects, each between half and all of the budget. The split depends only on the
items in a group, never on history or on other groups, so adding or removing
one item rewrites its own leaf, or the two halves of a leaf that just crossed
the budget (or their parent when they merge back). A full rebuild produces the
same leaves.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterable, Sequence
from functools import lru_cache
from itertools import accumulate
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)

KEY_BITS = 64

# memo(key, render) -> bytes: the compile cache (see ``cache.CompileCache``), or None.
Memo = Callable[[Hashable, Callable[[], bytes]], bytes]


class ObjectTooLarge(ValueError):
    """One item alone renders larger than the budget: no split can help."""


@lru_cache(maxsize=1 << 21)
def item_key(*parts: object) -> int:
    """A stable 64-bit hash of ``parts`` (Python's ``hash`` is salted per process)."""
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def fit(
    items: Sequence[T],
    *,
    key: Callable[[T], int],
    render: Callable[[Sequence[T], str], bytes],
    budget: int,
    size: Callable[[T], int] | None = None,
    allowed: Callable[[Sequence[T]], bool] | None = None,
    memo: Memo | None = None,
    context: Hashable = None,
) -> list[tuple[str, bytes]]:
    """Render ``items`` as one object, or as several under ``budget``: ``[(prefix, bytes)]``.

    ``render(items, prefix)`` renders one object (``prefix`` is ``""`` for the
    whole group, else the bits that name the part). ``size`` is a cheap lower
    bound of an item's rendered bytes, so a group known to be too large is split
    unrendered; ``allowed`` says whether a group is within the CRD's list
    limits. With ``memo``, a part whose items (and ``context``) are unchanged
    since the last compile is not rendered again.
    """
    out: list[tuple[str, bytes]] = []

    def emit(group: Sequence[T], prefix: str) -> bytes:
        if memo is None:
            return render(group, prefix)
        return memo((context, prefix, tuple(group)), lambda: render(group, prefix))

    def fits(group: Sequence[T], floor: int, prefix: str) -> bool:
        if floor > budget or (allowed is not None and not allowed(group)):
            return False
        data = emit(group, prefix)
        if len(data) <= budget:
            out.append((prefix, data))
            return True
        if len(group) == 1 or len(prefix) >= KEY_BITS:
            raise ObjectTooLarge(
                f"an object of {len(data):,} bytes cannot be split under the {budget:,}-byte budget; "
                "raise EGRESS_BUNDLE_MAX_OBJECT_BYTES"
            )
        return False

    sizes = [size(item) for item in items] if size is not None else [0] * len(items)
    if fits(items, sum(sizes), ""):
        return out
    # Sorted by key, every node of the trie is a slice: halves are found by bisection.
    hashes = [key(item) for item in items]
    order = sorted(range(len(items)), key=hashes.__getitem__)
    keys = [hashes[i] for i in order]
    ordered = [items[i] for i in order]
    floors = [0, *accumulate(sizes[i] for i in order)]

    def visit(lo: int, hi: int, prefix: str) -> None:
        if prefix and fits(ordered[lo:hi], floors[hi] - floors[lo], prefix):
            return
        if len(prefix) >= KEY_BITS:
            raise ObjectTooLarge(f"{hi - lo:,} items share one 64-bit key and cannot be split")
        depth = len(prefix)
        upper = ((int(prefix, 2) if prefix else 0) * 2 + 1) << (KEY_BITS - 1 - depth)
        mid = bisect_left(keys, upper, lo, hi)
        if lo < mid:
            visit(lo, mid, prefix + "0")
        if mid < hi:
            visit(mid, hi, prefix + "1")

    visit(0, len(ordered), "")
    return out


class SortedItems(Generic[T]):
    """A group's items in key order, changed one at a time, remembering the keys that changed.

    ``refit`` re-splits such a group looking only at the trie nodes holding a
    changed key: the parts elsewhere are the ones ``fit`` would make again.
    """

    def __init__(self, key: Callable[[T], int]) -> None:
        self.key = key
        self.keys: list[int] = []
        self.items: list[T] = []
        self.changed: set[int] = set()
        self.parts: list[tuple[str, bytes]] = []  # the last refit, in prefix order
        self._pending: list[tuple[int, T]] = []

    @classmethod
    def of(cls, key: Callable[[T], int], items: Iterable[T]) -> SortedItems[T]:
        """A new group of ``items`` (never split yet, so nothing counts as changed)."""
        group = cls(key)
        keyed = sorted([(key(item), item) for item in items], key=_first)
        group.keys = [k for k, _ in keyed]
        group.items = [item for _, item in keyed]
        return group

    def __len__(self) -> int:
        return len(self.items) + len(self._pending)

    def add(self, item: T) -> None:
        key = self.key(item)
        self._pending.append((key, item))
        self.changed.add(key)

    def sort(self) -> None:
        """Place the added items: one by one when few, else one sort (a group built from nothing)."""
        pending, self._pending = self._pending, []
        if len(pending) * 8 < len(self.items):
            for key, item in pending:
                at = bisect_right(self.keys, key)
                self.keys.insert(at, key)
                self.items.insert(at, item)
            return
        merged = sorted([*zip(self.keys, self.items, strict=True), *pending], key=_first)
        self.keys = [key for key, _ in merged]
        self.items = [item for _, item in merged]

    def remove(self, item: T) -> None:
        self.sort()
        key = self.key(item)
        at = bisect_left(self.keys, key)
        while self.items[at] != item:
            at += 1
        del self.keys[at]
        del self.items[at]
        self.changed.add(key)


def refit(
    group: SortedItems[T],
    *,
    render: Callable[[Sequence[T], str], bytes],
    budget: int,
    size: Callable[[T], int] | None = None,
    allowed: Callable[[Sequence[T]], bool] | None = None,
    memo: Memo | None = None,
    context: Hashable = None,
) -> list[tuple[str, bytes]]:
    """``fit(group.items, ...)`` from the group's last parts and the keys changed since.

    A trie node without a changed key holds the items it held last time, so it
    splits as it did then: its parts are reused. Only the nodes on the paths to
    the changed keys are decided again, exactly as ``fit`` decides them.
    """
    group.sort()
    keys, items = group.keys, group.items
    changed = sorted(group.changed)
    previous = group.parts
    prefixes = [prefix for prefix, _ in previous]
    out: list[tuple[str, bytes]] = []

    def emit(part: Sequence[T], prefix: str) -> bytes:
        if memo is None:
            return render(part, prefix)
        return memo((context, prefix, tuple(part)), lambda: render(part, prefix))

    def fits(lo: int, hi: int, prefix: str) -> bool:
        part = items[lo:hi]
        if allowed is not None and not allowed(part):
            return False
        if size is not None:
            floor = 0
            for item in part:
                floor += size(item)
                if floor > budget:
                    return False
        data = emit(part, prefix)
        if len(data) <= budget:
            out.append((prefix, data))
            return True
        if hi - lo == 1 or len(prefix) >= KEY_BITS:
            raise ObjectTooLarge(
                f"an object of {len(data):,} bytes cannot be split under the {budget:,}-byte budget; "
                "raise EGRESS_BUNDLE_MAX_OBJECT_BYTES"
            )
        return False

    def visit(lo: int, hi: int, prefix: str) -> None:
        depth = len(prefix)
        base = (int(prefix, 2) if prefix else 0) << (KEY_BITS - depth)
        start = bisect_left(changed, base)
        if start == len(changed) or changed[start] >= base + (1 << (KEY_BITS - depth)):
            # Leaves are prefix-free, so "0" < "00" < "01" < "1": the node's parts are one run.
            first = bisect_left(prefixes, prefix)
            last = bisect_left(prefixes, prefix + "2", first)
            if last > first:
                out.extend(previous[first:last])
                return
        if fits(lo, hi, prefix):
            return
        if depth >= KEY_BITS:
            raise ObjectTooLarge(f"{hi - lo:,} items share one 64-bit key and cannot be split")
        upper = base + (1 << (KEY_BITS - 1 - depth))
        mid = bisect_left(keys, upper, lo, hi)
        if lo < mid:
            visit(lo, mid, prefix + "0")
        if mid < hi:
            visit(mid, hi, prefix + "1")

    visit(0, len(items), "")
    group.parts, group.changed = out, set()
    return out


def _first(pair: tuple[int, object]) -> int:
    return pair[0]


def fit_group(
    items: Sequence[T] | SortedItems[T],
    *,
    key: Callable[[T], int],
    render: Callable[[Sequence[T], str], bytes],
    budget: int,
    size: Callable[[T], int] | None = None,
    allowed: Callable[[Sequence[T]], bool] | None = None,
    memo: Memo | None = None,
    context: Hashable = None,
) -> list[tuple[str, bytes]]:
    """``refit`` for a group kept as ``SortedItems`` (keyed by ``key``), split again only where it
    changed; ``fit`` for a plain sequence. The same parts either way."""
    if isinstance(items, SortedItems):
        return refit(items, render=render, budget=budget, size=size, allowed=allowed, memo=memo, context=context)
    return fit(items, key=key, render=render, budget=budget, size=size, allowed=allowed, memo=memo, context=context)
