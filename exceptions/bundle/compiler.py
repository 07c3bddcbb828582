"""The bundle compiler: frozen grant records and a time in, ``{path: bytes}`` out.

Pure: no Django, no database, no network, no clock it was not given. Identical
input gives identical bytes (sorted keys, stable order, no timestamps).
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from exceptions.bundle import cilium, istio, opa, owners
from exceptions.bundle.cache import CompileCache
from exceptions.bundle.records import BundleOptions, GrantRecord

MANIFEST = "MANIFEST.json"
OPA_MANIFEST = "opa/.manifest"
# The repository entries a bundle owns: a full rebuild replaces everything under
# them and nothing else (other writers keep their own paths, such as audit/).
OWNED_ROOTS = frozenset({MANIFEST, "opa", "cilium", "istio", "teams", owners.CODEOWNERS})


def owned_roots(paths: Iterable[str]) -> frozenset[str]:
    return OWNED_ROOTS | {path.split("/", 1)[0] for path in paths}


@dataclass(frozen=True)
class Bundle:
    files: dict[str, bytes]
    revision: str
    grant_count: int
    # SHA-256 of every file, MANIFEST.json included: what changed since another bundle.
    digests: Mapping[str, str] = field(default_factory=dict)
    # The open grants compiled in, by id (for the commit message's added/removed).
    records: tuple[GrantRecord, ...] = ()

    def opa_files(self) -> dict[str, bytes]:
        """The OPA bundle's own files, relative to its root."""
        return {path[len("opa/") :]: data for path, data in self.files.items() if path.startswith("opa/")}

    def with_files(self, extra: Mapping[str, bytes]) -> Bundle:
        """This bundle plus ``extra`` files (a signature): same revision, digests updated."""
        files = dict(sorted({**self.files, **extra}.items()))
        digests = {**self.digests, **{path: digest(data) for path, data in extra.items()}}
        return replace(self, files=files, digests=digests)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compile_bundle(
    records: Iterable[GrantRecord],
    *,
    now: datetime,
    options: BundleOptions | None = None,
    cache: CompileCache | None = None,
) -> Bundle:
    """Compile the grants that are still open at ``now``.

    OPA gets every open grant (it checks valid_from and expiry itself); Cilium and
    Istio, which have no clock, get the grants valid at ``now``. With ``cache``,
    objects whose inputs did not change since its last compile are reused: the
    bytes are identical either way (tested).
    """
    options = options or BundleOptions()
    # Millions of short-lived, acyclic objects: the cyclic collector would only
    # rescan them (about a third of a 100,000-grant compile).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _compile(records, now=now, options=options, cache=cache)
    finally:
        if cache is not None:
            cache.finish()
        if collecting:
            gc.enable()


def _compile(
    records: Iterable[GrantRecord], *, now: datetime, options: BundleOptions, cache: CompileCache | None
) -> Bundle:
    memo = cache.memo if cache is not None else None
    hexdigest = cache.digest if cache is not None else digest
    open_records = sorted((r for r in records if r.expires_at > now), key=lambda r: r.id)
    valid_now = [r for r in open_records if r.valid_from <= now]
    files: dict[str, bytes] = {}
    files.update(opa.emit(open_records, memo))
    cilium_files, cilium_skipped = cilium.emit(valid_now, options, memo)
    istio_files, istio_skipped = istio.emit(valid_now, options, memo)
    files.update(cilium_files)
    files.update(istio_files)
    files.update(owners.team_files(open_records, options))
    digests = {path: hexdigest(data) for path, data in files.items()}
    content = hashlib.sha256()
    for path in sorted(files):
        content.update(f"{path}\0{digests[path]}\n".encode())
    revision = content.hexdigest()[:20]
    files[OPA_MANIFEST] = opa.manifest(revision)
    digests[OPA_MANIFEST] = digest(files[OPA_MANIFEST])
    manifest = {
        "revision": revision,
        "counts": {
            "grants": len(open_records),
            "grants_valid_now": len(valid_now),
            "identities": len({r.identity for r in open_records}),
            "cilium_policies": len(cilium_files),
            "istio_service_entries": sum(path.startswith("istio/serviceentries/") for path in istio_files),
            "istio_authorization_policies": sum("/authorizationpolicies/" in path for path in istio_files),
            "largest_object_bytes": max(
                (len(data) for path, data in files.items() if path.endswith(".yaml")), default=0
            ),
        },
        "skipped": {"cilium": cilium_skipped, "istio": istio_skipped},
        "teams": owners.team_counts(open_records, files),
        "provider_ranges": {
            provider: {"sync_token": token, "published": published}
            for provider, token, published in sorted(options.provider_ranges)
        },
        "files": dict(sorted(digests.items())),
    }
    files[MANIFEST] = (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()
    digests[MANIFEST] = digest(files[MANIFEST])
    return Bundle(
        files=dict(sorted(files.items())),
        revision=revision,
        grant_count=len(open_records),
        digests=digests,
        records=tuple(open_records),
    )
