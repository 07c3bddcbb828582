"""The bundle compiler: frozen grant records and a time in, ``{path: bytes}`` out.

Pure: no Django, no database, no network, no clock it was not given. Identical
input gives identical bytes (sorted keys, stable order, no timestamps).
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from bundle import owners
from bundle.budget import ObjectTooLarge
from bundle.cache import CompileCache
from bundle.emitters import Emitted, Emitter, registered
from bundle.records import BundleOptions, GrantRecord

MANIFEST = "MANIFEST.json"
# The portal's signature over the whole tree (bundle/tree_signature.py), beside the manifest it covers.
MANIFEST_SIGNATURE = "MANIFEST.sig"


def owned_roots(paths: Iterable[str]) -> frozenset[str]:
    """The repository entries a bundle owns: a full rebuild replaces everything under
    them and nothing else (other writers keep their own paths, such as audit/).
    Every registered engine's roots, so one no longer emitted is cleared away too."""
    roots = {
        MANIFEST,
        MANIFEST_SIGNATURE,
        "teams",
        owners.CODEOWNERS,
        *(root for emitter in registered() for root in emitter.roots),
    }
    return frozenset(roots | {path.split("/", 1)[0] for path in paths})


@dataclass(frozen=True)
class Bundle:
    files: dict[str, bytes]
    revision: str
    grant_count: int
    # SHA-256 of every file, MANIFEST.json included: what changed since another bundle.
    digests: Mapping[str, str] = field(default_factory=dict)
    # The open grants compiled in, by id (for the commit message's added/removed).
    records: Mapping[int, GrantRecord] = field(default_factory=dict)
    # Files added after MANIFEST.json was written (signatures), which its "files" do not list.
    unlisted: frozenset[str] = frozenset()

    def files_under(self, root: str) -> dict[str, bytes]:
        """The files under the directory ``root``, relative to it (the OPA bundle's own files, say)."""
        prefix = root.rstrip("/") + "/"
        return {path[len(prefix) :]: data for path, data in self.files.items() if path.startswith(prefix)}

    def with_files(self, extra: Mapping[str, bytes]) -> Bundle:
        """This bundle plus ``extra`` files (a signature): same revision, digests updated.

        The extra files are not in MANIFEST.json's list; the tree signature lists them itself.
        """
        files = dict(sorted({**self.files, **extra}.items()))
        digests = {**self.digests, **{path: digest(data) for path, data in extra.items()}}
        return replace(self, files=files, digests=digests, unlisted=self.unlisted | set(extra))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compile_bundle(
    records: Iterable[GrantRecord],
    *,
    now: datetime,
    options: BundleOptions | None = None,
    cache: CompileCache | None = None,
) -> Bundle:
    """Compile the grants that are still open at ``now``, with every registered emitter.

    An engine that checks the time itself (OPA) gets every open grant; the
    others, which have no clock, get the grants valid at ``now``. With
    ``cache``, objects whose inputs did not change since its last compile are
    reused: the bytes are identical either way (tested).
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
    open_records = sorted((r for r in records if r.expires_at > now), key=lambda r: r.id)
    valid_now = [r for r in open_records if r.valid_from <= now]
    team_grants: dict[str, int] = {}
    team_workloads: dict[str, set[str]] = {}
    for record in open_records:
        if record.team:
            team_grants[record.team] = team_grants.get(record.team, 0) + 1
            team_workloads.setdefault(record.team, set()).add(record.identity)
    return assemble(
        Parts(
            emitted=tuple(
                (emitter, emitter.render(open_records if emitter.checks_time else valid_now, options, memo))
                for emitter in registered()
            ),
            grants=len(open_records),
            valid_now=len(valid_now),
            identities=len({r.identity for r in open_records}),
            team_grants=team_grants,
            team_workloads={team: len(identities) for team, identities in team_workloads.items()},
            records={r.id: r for r in open_records},
        ),
        options,
        cache.digest if cache is not None else digest,
    )


@dataclass(frozen=True)
class Parts:
    """What the emitters made of the open grants, before the manifest binds them together."""

    emitted: tuple[tuple[Emitter, Emitted], ...]  # in registry order
    grants: int
    valid_now: int
    identities: int
    team_grants: Mapping[str, int]  # open grants per team
    team_workloads: Mapping[str, int]  # identities with an open grant per team
    records: Mapping[int, GrantRecord]


def assemble(parts: Parts, options: BundleOptions, hexdigest: Callable[[bytes], str] = digest) -> Bundle:
    """The bundle from its parts: team files, digests, the revision, the manifests.

    Shared by the full compile and the incremental one (``incremental.py``), so
    the two agree on everything but how the parts were found.
    """
    files: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    largest = 0
    for emitter, emitted in parts.emitted:
        files.update(emitted.files)
        counts.update(emitter.counts(emitted.files))
        budget = emitter.budget(options)
        if budget is not None and emitted.files:
            size = max(map(len, emitted.files.values()))
            if size > budget:
                path = next(path for path, data in emitted.files.items() if len(data) == size)
                raise ObjectTooLarge(
                    f"{emitter.name}: {path} is {size:,} bytes, over its {budget:,}-byte budget; "
                    "an emitter splits its objects under its budget (budget.fit)"
                )
            largest = max(largest, size)
    roots = [root for emitter, _ in parts.emitted for root in emitter.roots]
    files.update(owners.files_for(parts.team_grants, options, roots))
    digests = {path: hexdigest(data) for path, data in files.items()}
    content = hashlib.sha256()
    for path in sorted(files):
        content.update(f"{path}\0{digests[path]}\n".encode())
    revision = content.hexdigest()[:20]
    for emitter, _ in parts.emitted:
        for path, data in emitter.stamp(revision).items():
            files[path] = data
            digests[path] = digest(data)
    manifest = {
        "revision": revision,
        "counts": {
            "grants": parts.grants,
            "grants_valid_now": parts.valid_now,
            "identities": parts.identities,
            **counts,
            # The largest object of an engine with a size budget (a Kubernetes object).
            "largest_object_bytes": largest,
        },
        "skipped": {
            emitter.name: list(emitted.skipped) for emitter, emitted in parts.emitted if emitted.skipped is not None
        },
        "teams": owners.counted(parts.team_grants, parts.team_workloads, files),
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
        grant_count=parts.grants,
        digests=digests,
        records=parts.records,
    )
