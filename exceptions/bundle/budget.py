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
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

KEY_BITS = 64


class ObjectTooLarge(ValueError):
    """One item alone renders larger than the budget: no split can help."""


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
    floor: Callable[[Sequence[T]], int] | None = None,
    allowed: Callable[[Sequence[T]], bool] | None = None,
) -> list[tuple[str, bytes]]:
    """Render ``items`` as one object, or as several under ``budget``: ``[(prefix, bytes)]``.

    ``render(items, prefix)`` renders one object (``prefix`` is ``""`` for the
    whole group, else the bits that name the part). ``floor`` is a cheap lower
    bound of the rendered size, so a group known to be too large is split
    unrendered; ``allowed`` says whether a group is within the CRD's list limits.
    Keys are only computed for groups that need splitting.
    """
    out: list[tuple[str, bytes]] = []

    def visit(prefix: str, group: Sequence[T], keys: Sequence[int] | None) -> None:
        if (floor is None or floor(group) <= budget) and (allowed is None or allowed(group)):
            data = render(group, prefix)
            if len(data) <= budget:
                out.append((prefix, data))
                return
            if len(group) == 1 or len(prefix) >= KEY_BITS:
                raise ObjectTooLarge(
                    f"an object of {len(data):,} bytes cannot be split under the {budget:,}-byte budget; "
                    "raise EGRESS_BUNDLE_MAX_OBJECT_BYTES"
                )
        elif len(prefix) >= KEY_BITS:
            raise ObjectTooLarge(f"{len(group):,} items share one 64-bit key and cannot be split")
        if keys is None:
            keys = [key(item) for item in group]
        shift = KEY_BITS - 1 - len(prefix)
        halves: tuple[tuple[list[T], list[int]], tuple[list[T], list[int]]] = (([], []), ([], []))
        for item, item_hash in zip(group, keys, strict=True):
            half = halves[(item_hash >> shift) & 1]
            half[0].append(item)
            half[1].append(item_hash)
        for bit, (half_items, half_keys) in enumerate(halves):
            if half_items:
                visit(prefix + str(bit), half_items, half_keys)

    visit("", items, None)
    return out
