"""The registry of emitters: one line per enforcement engine.

The compiler, the incremental compiler, CODEOWNERS and the policy repository
iterate ``registered()`` and name no engine. Adding one is a module beside
these (a ``GroupedEmitter``, usually: see ``base.py``; ``TeamFiles`` in
tests/bundle/test_emitters.py is a whole one in twenty lines), a
line below, and its tests. The order is CODEOWNERS' line order.
"""

from __future__ import annotations

from bundle.emitters.base import Emitted, Emitter, GroupedEmitter, Groups
from bundle.emitters.cilium import CILIUM
from bundle.emitters.istio import ISTIO
from bundle.emitters.opa import OPA

__all__ = ["Emitted", "Emitter", "GroupedEmitter", "Groups", "register", "registered", "unregister"]

_REGISTRY: dict[str, Emitter] = {}


def register(emitter: Emitter) -> Emitter:
    """Add ``emitter`` to every compile from now on (after those registered before it)."""
    if not emitter.name or emitter.name in _REGISTRY:
        raise ValueError(f"emitter name {emitter.name!r}: empty or registered already; each engine needs its own")
    # teams/ holds every engine's team fragments (teams/<team>/<root>/), so no engine owns it.
    taken = {"teams"} | {root for other in _REGISTRY.values() for root in other.roots}
    if not emitter.roots or taken & set(emitter.roots):
        raise ValueError(
            f"emitter {emitter.name!r}: roots {emitter.roots!r} empty or taken ({sorted(taken)}); "
            "each engine owns directories of its own"
        )
    _REGISTRY[emitter.name] = emitter
    return emitter


def unregister(name: str) -> None:
    del _REGISTRY[name]


def registered() -> tuple[Emitter, ...]:
    return tuple(_REGISTRY.values())


register(OPA)
register(ISTIO)
register(CILIUM)
