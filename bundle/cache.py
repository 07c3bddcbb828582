"""What the last compile produced, per object, keyed by the content it was made from.

A publish after one grant changed compiles the whole state again (the
compiler stays a pure function of the records), but every object whose
inputs are unchanged comes from here instead of being rendered, and every
file whose bytes are unchanged keeps its digest. Entries the latest compile
did not use are dropped, so the cache holds about one bundle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable


class _Key:
    """A key whose hash is computed once (a tuple of 400 records is costly to hash twice)."""

    __slots__ = ("hash", "value")

    def __init__(self, value: Hashable) -> None:
        self.value = value
        self.hash = hash(value)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.hash == other.hash and self.value == other.value


class CompileCache:
    def __init__(self) -> None:
        self._rendered: dict[Hashable, bytes] = {}
        self._digests: dict[bytes, str] = {}
        self._used: dict[Hashable, bytes] = {}
        self._used_digests: dict[bytes, str] = {}
        self.hits = 0
        self.misses = 0

    def memo(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        hashed = _Key(key)
        data = self._rendered.get(hashed)
        if data is None:
            self.misses += 1
            data = render()
        else:
            self.hits += 1
        self._used[hashed] = data
        return data

    def digest(self, data: bytes) -> str:
        # A cached file is the same bytes object, whose hash CPython keeps: the lookup is cheap.
        sha = self._used_digests.get(data) or self._digests.get(data)
        if sha is None:
            sha = hashlib.sha256(data).hexdigest()
        self._used_digests[data] = sha
        return sha

    def finish(self) -> None:
        """End of a compile: keep what it used, forget the rest."""
        self._rendered, self._used = self._used, {}
        self._digests, self._used_digests = self._used_digests, {}
        self.hits = self.misses = 0
