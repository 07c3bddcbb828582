"""The policy repository (git side of publishing): build the tree, commit when it changed, push.

No work tree: blobs, trees and commits are written straight into a bare
cache repository with libgit2 (pygit2), and only the files whose content
changed since the last push become new blobs. ``git`` itself fetches and
pushes (credentials, transports and ``http.*`` config as an operator expects).
Paths outside the bundle's own top-level entries (another writer's ``audit/``,
a README) are carried over from the branch as they are, never deleted.

The caller holds the publisher lock; this module knows nothing of Django.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pygit2

from bundle import tree_signature
from bundle.compiler import MANIFEST, MANIFEST_SIGNATURE, Bundle, owned_roots
from bundle.records import GrantRecord, rfc3339
from bundle.signatures import SIGNATURES, Signer, signed_part

OPA_SIGNATURES = f"opa/{SIGNATURES}"

REJECTED_MARKERS = ("[rejected]", "non-fast-forward", "fetch first", "failed to update ref", "cannot lock ref")


class PublishError(Exception):
    """A publish failed. ``transient`` errors (network, a moving branch) are worth retrying."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class GrantSummary:
    id: int
    identity: str
    host: str
    port: int
    protocol: str
    expires_at: str
    request_id: int
    decided_by: str

    def line(self) -> str:
        decider = f", approved by {self.decided_by}" if self.decided_by else ""
        return (
            f"  grant {self.id}: {self.identity} -> {self.host}:{self.port}/{self.protocol} "
            f"until {self.expires_at} (request #{self.request_id}{decider})"
        )


@dataclass(frozen=True)
class DriftedPath:
    path: str  # in the repository (with POLICY_REPO_SUBDIR)
    change: str  # "added", "modified" or "deleted"
    restored: bool  # under the bundle's own roots: the publish puts the signed state back


@dataclass(frozen=True)
class ForeignCommit:
    sha: str
    author: str
    subject: str


@dataclass(frozen=True)
class Drift:
    """What commits the publisher did not make changed on the branch since its last known commit."""

    since: str  # the last commit the publisher made or examined
    head: str  # the branch head it found ("" when the branch is gone)
    paths: tuple[DriftedPath, ...]
    commits: tuple[ForeignCommit, ...]
    # ``since`` is no longer in the branch's history (a force push, a deleted branch).
    rewritten: bool = False


MAX_DRIFT_COMMITS = 100  # listed per drift; the branch's log has the rest


@dataclass
class PublishResult:
    status: str  # "published" or "unchanged"
    revision: str
    commit: str = ""
    attempts: int = 1
    added: list[GrantSummary] = field(default_factory=list)
    removed: list[GrantSummary] = field(default_factory=list)
    # Files written as new blobs by the pushed attempt (a handful for one approval).
    written: int = 0
    # Whether the branch was fetched before building (it had moved since this process's last push).
    fetched: bool = False


def summary(record: GrantRecord) -> GrantSummary:
    return GrantSummary(
        record.id,
        record.identity,
        record.host,
        record.port,
        record.protocol,
        rfc3339(record.expires_at),
        record.request_id,
        record.decided_by,
    )


def grants_in(shard_json: bytes | None) -> dict[int, GrantSummary]:
    """The grants in one OPA data shard (the slow path, when no earlier bundle is at hand)."""
    if not shard_json:
        return {}
    grants = json.loads(shard_json)
    return {
        entry["id"]: GrantSummary(
            entry["id"],
            identity,
            host,
            entry["port"],
            entry["protocol"],
            entry["expires_at"],
            entry.get("request_id", 0),
            entry.get("decided_by", ""),
        )
        for identity, by_host in grants.items()
        for host, entries in by_host.items()
        for entry in entries
    }


MAX_LISTED = 500  # per section; the data itself is in the commit


def _section(title: str, grants: list[GrantSummary]) -> list[str]:
    if not grants:
        return []
    lines = ["", f"{title}:", *(g.line() for g in grants[:MAX_LISTED])]
    if len(grants) > MAX_LISTED:
        lines.append(f"  ... and {len(grants) - MAX_LISTED} more")
    return lines


def commit_message(revision: str, added: list[GrantSummary], removed: list[GrantSummary], trigger: str) -> str:
    lines = [f"Egress policy bundle {revision}: +{len(added)} -{len(removed)} grants", "", f"Trigger: {trigger}"]
    lines += _section("Added", added) + _section("Removed", removed)
    return "\n".join(lines) + "\n"


def is_local_path(url: str) -> bool:
    return "://" not in url and not url.startswith("git@") and ":" not in url.split("/", 1)[0]


def with_credentials(url: str, username: str, password: str) -> str:
    if not username or not url.startswith(("https://", "http://")):
        return url
    parts = urlsplit(url)
    return parts._replace(
        netloc=f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.hostname}"
        + (f":{parts.port}" if parts.port else "")
    ).geturl()


@dataclass
class _Pushed:
    """What this process last pushed: the commit and the bundle it carries."""

    commit: str
    bundle: Bundle


# Per process and repository: the next publish builds on it without a fetch
# while the caller's shared ``heads`` say nobody else pushed since. Otherwise
# the branch is fetched and only the files that differ from its tree are written.
_LAST_PUSHED: dict[tuple[str, str, str, str], _Pushed] = {}


class PolicyRepository:
    def __init__(
        self,
        *,
        url: str,
        work_dir: Path,
        branch: str = "main",
        subdir: str = "",
        author: tuple[str, str] = ("Egress Portal", "egress-portal@localhost"),
        username: str = "",
        password: str = "",
        max_attempts: int = 5,
    ) -> None:
        self.url = url
        self.remote_url = with_credentials(url, username, password)
        self.work_dir = Path(work_dir)
        self.branch = branch
        self.subdir = subdir.strip("/")
        self.author = author
        self.max_attempts = max_attempts
        self.remote_ref = f"refs/remotes/origin/{self.branch}"
        self.env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}

    # --- repository plumbing ---------------------------------------------------

    @property
    def _key(self) -> tuple[str, str, str, str]:
        return (str(self.work_dir.resolve()), self.url, self.branch, self.subdir)

    def _ensure_remote(self) -> None:
        if is_local_path(self.url) and not Path(self.url).exists():
            Path(self.url).parent.mkdir(parents=True, exist_ok=True)
            pygit2.init_repository(self.url, bare=True, initial_head=self.branch)

    def _repo(self) -> pygit2.Repository:
        """The bare cache repository (an older non-bare clone in its place is replaced)."""
        if (self.work_dir / "HEAD").exists() and (self.work_dir / "objects").is_dir():
            return pygit2.Repository(str(self.work_dir))
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)
        self.work_dir.parent.mkdir(parents=True, exist_ok=True)
        repo = pygit2.init_repository(str(self.work_dir), bare=True, initial_head=self.branch)
        # No background "gc --auto" racing the next publish in this cache.
        repo.config["gc.autoDetach"] = False
        _LAST_PUSHED.pop(self._key, None)
        return repo

    def _git(self, *args: str) -> None:
        done = subprocess.run(
            ["git", "--git-dir", str(self.work_dir), *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise _GitFailed(args[0], f"{done.stderr}{done.stdout}".replace(self.remote_url, self.url).strip())

    def _fetch(self, repo: pygit2.Repository) -> pygit2.Commit | None:
        """The remote branch head (None if the remote has no such branch yet)."""
        try:
            self._git("fetch", "--quiet", "--no-tags", self.remote_url, f"+refs/heads/{self.branch}:{self.remote_ref}")
        except _GitFailed as exc:
            if "couldn't find remote ref" not in exc.detail:
                raise
            # A new repository, or the remote lost the branch: start it again from an empty tree.
            if repo.references.get(self.remote_ref) is not None:
                repo.references.delete(self.remote_ref)
            return None
        return self._head(repo)

    def _head(self, repo: pygit2.Repository) -> pygit2.Commit | None:
        ref = repo.references.get(self.remote_ref)
        return repo[ref.target] if ref is not None else None  # type: ignore[return-value]

    def _behind(self, repo: pygit2.Repository, pushed: str, commit: str) -> bool:
        """Whether ``commit`` is ``pushed`` or one of its ancestors (an object the cache has is not
        enough: worker processes on one machine share ``work_dir`` but not their memories)."""
        if commit == pushed:
            return True
        try:
            return commit in repo and repo.descendant_of(pushed, commit)
        except (KeyError, ValueError, pygit2.GitError):
            return False

    def _path(self, path: str) -> str:
        return f"{self.subdir}/{path}" if self.subdir else path

    # --- trees -------------------------------------------------------------------

    def _changes(
        self, base: pygit2.Commit | None, bundle: Bundle, previous: Bundle | None
    ) -> tuple[list[str], list[str]]:
        """The bundle paths to write, and the repository paths to remove, on top of ``base``.

        With ``previous`` (the bundle the base commit carries) the digests say it;
        without it each file's git blob id is compared with the base tree's entry
        (hashing, not writing: a base another worker pushed is caught up with at the
        cost of its changes), and every other path under the bundle's own roots goes.
        """
        if previous is not None:
            stale = [self._path(path) for path in previous.digests.keys() - bundle.digests.keys()]
            changed = [path for path, sha in bundle.digests.items() if previous.digests.get(path) != sha]
            return changed, stale
        index = pygit2.Index()
        if base is not None:
            index.read_tree(base.tree)
        existing = {entry.path: entry.id for entry in index}
        roots = {self._path(root) for root in owned_roots(bundle.files)}
        prefixes = tuple(f"{root}/" for root in roots)
        wanted = {self._path(path) for path in bundle.files}
        stale = [p for p in existing if (p in roots or p.startswith(prefixes)) and p not in wanted]
        changed = [path for path, data in bundle.files.items() if existing.get(self._path(path)) != pygit2.hash(data)]
        return changed, stale

    def _tree(
        self, repo: pygit2.Repository, base: pygit2.Commit | None, bundle: Bundle, changed: list[str], stale: list[str]
    ) -> pygit2.Oid:
        """The base commit's tree with ``changed`` written and ``stale`` removed.

        The tree is the same for the same base and bundle, whichever way the changes were found.
        """
        index = pygit2.Index()
        if base is not None:
            index.read_tree(base.tree)
        for path in stale:
            if path in index:
                index.remove(path)
        for path in changed:
            oid = repo.create_blob(bundle.files[path])
            index.add(pygit2.IndexEntry(self._path(path), oid, pygit2.enums.FileMode.BLOB))
        return index.write_tree(repo)

    def _keep_signature(
        self, repo: pygit2.Repository, base: pygit2.Commit | None, bundle: Bundle, previous: Bundle | None, path: str
    ) -> Bundle:
        """Keep the branch's signature file at ``path`` when it signs the same claims with the same key.

        ES256 signatures are randomised: a fresh one over unchanged files would
        otherwise make a commit of its own.
        """
        new = bundle.files.get(path)
        if new is None or base is None:
            return bundle
        if previous is not None:
            old = previous.files.get(path)
        else:
            try:
                old = repo[base.tree[self._path(path)].id].data  # type: ignore[attr-defined]
            except KeyError:
                old = None
        if old is None or old == new:
            return bundle
        same = _signed_part(path, old)
        return bundle.with_files({path: old}) if same and same == _signed_part(path, new) else bundle

    def _signed(
        self,
        repo: pygit2.Repository,
        base: pygit2.Commit | None,
        bundle: Bundle,
        previous: Bundle | None,
        signer: Signer | None,
    ) -> Bundle:
        """The signatures the branch already has for this content, and a tree signature over the result."""
        bundle = self._keep_signature(repo, base, bundle, previous, OPA_SIGNATURES)
        if MANIFEST_SIGNATURE not in bundle.files:
            return bundle
        if not tree_signature.covers(bundle):
            # The OPA signature kept from the branch is other bytes: the tree is signed again.
            if signer is None:
                raise PublishError(
                    f"{MANIFEST_SIGNATURE} does not cover the files and no signer was given", transient=False
                )
            bundle = tree_signature.sign(bundle, signer)
        return self._keep_signature(repo, base, bundle, previous, MANIFEST_SIGNATURE)

    def _message(
        self,
        repo: pygit2.Repository,
        base: pygit2.Commit | None,
        bundle: Bundle,
        previous: Bundle | None,
        trigger: str,
        changed: list[str],
        stale: list[str],
    ) -> tuple[str, list[GrantSummary], list[GrantSummary]]:
        # Added and removed are counted against what the base commit has, so a
        # commit that failed to push is described again when it goes out.
        now = bundle.records
        if previous is not None:
            earlier = previous.records
            added = [summary(now[i]) for i in sorted(now.keys() - earlier.keys())]
            removed = [summary(earlier[i]) for i in sorted(earlier.keys() - now.keys())]
        else:
            # Only the data shards that differ from the base can hold a grant added or removed.
            shards = self._path("opa/egress/grants") + "/"
            touched = [self._path(p) for p in changed] + stale
            before = self._grants_at(repo, base, [p for p in touched if p.startswith(shards)])
            after: set[int] = set()
            for path in changed:
                if self._path(path).startswith(shards) and path.endswith("/data.json"):
                    after.update(grants_in(bundle.files[path]))
            added = [summary(now[i]) for i in sorted(after - before.keys()) if i in now]
            removed = [before[i] for i in sorted(before.keys() - after)]
        return commit_message(bundle.revision, added, removed, trigger), added, removed

    def _grants_at(
        self, repo: pygit2.Repository, base: pygit2.Commit | None, paths: list[str]
    ) -> dict[int, GrantSummary]:
        if base is None:
            return {}
        grants: dict[int, GrantSummary] = {}
        for path in paths:
            if not path.endswith("/data.json"):
                continue
            try:
                entry = base.tree[path]
            except KeyError:
                continue
            grants.update(grants_in(repo[entry.id].data))  # type: ignore[attr-defined]
        return grants

    # --- drift ---------------------------------------------------------------------

    def _drift(
        self,
        repo: pygit2.Repository,
        since: str,
        head: pygit2.Commit | None,
        bundle: Bundle,
        own: Callable[[str, bytes], bool] | None,
    ) -> Drift | None:
        """What changed under the bundle's directory from ``since`` to ``head``, but for files the
        portal's other writers add (``own``: an audit checkpoint it signed). None when nothing did."""
        if head is None:
            return Drift(since, "", (), (), rewritten=True)
        if str(head.id) == since:
            return None
        try:
            old: pygit2.Commit | None = repo[since]  # type: ignore[assignment]
        except (KeyError, ValueError):
            old = None
        if old is None:
            return Drift(since, str(head.id), (), (), rewritten=True)
        rewritten = not repo.descendant_of(head.id, old.id)
        prefix = f"{self.subdir}/" if self.subdir else ""
        roots = owned_roots(bundle.files)
        paths: dict[str, DriftedPath] = {}
        for delta in old.tree.diff_to_tree(head.tree).deltas:
            path = delta.new_file.path if delta.status != pygit2.enums.DeltaStatus.DELETED else delta.old_file.path
            if not path.startswith(prefix):
                continue
            change = {
                pygit2.enums.DeltaStatus.ADDED: "added",
                pygit2.enums.DeltaStatus.DELETED: "deleted",
            }.get(delta.status, "modified")
            if change == "added" and own is not None and own(path, repo[delta.new_file.id].data):  # type: ignore[attr-defined]
                continue
            restored = path[len(prefix) :].split("/", 1)[0] in roots
            paths[path] = DriftedPath(path, change, restored)
        if not paths and not rewritten:
            return None
        return Drift(
            since,
            str(head.id),
            tuple(sorted(paths.values(), key=lambda p: p.path)),
            self._foreign_commits(repo, old, head, set(paths)),
            rewritten,
        )

    def _foreign_commits(
        self, repo: pygit2.Repository, old: pygit2.Commit, head: pygit2.Commit, paths: set[str]
    ) -> tuple[ForeignCommit, ...]:
        """The commits after ``old`` up to ``head`` that touched a drifted path, newest first."""
        walker = repo.walk(head.id, pygit2.enums.SortMode.TOPOLOGICAL)
        walker.hide(old.id)
        found: list[ForeignCommit] = []
        for commit in walker:
            if len(found) >= MAX_DRIFT_COMMITS:
                break
            if commit.parents:
                diff = commit.parents[0].tree.diff_to_tree(commit.tree)
            else:
                diff = commit.tree.diff_to_tree(swap=True)
            touched = {d.new_file.path for d in diff.deltas} | {d.old_file.path for d in diff.deltas}
            if touched & paths:
                author = f"{commit.author.name} <{commit.author.email}>"
                found.append(ForeignCommit(str(commit.id), author, commit.message.split("\n", 1)[0][:200]))
        return tuple(found)

    def _examined(
        self,
        repo: pygit2.Repository,
        since: str,
        head: pygit2.Commit | None,
        bundle: Bundle,
        own: Callable[[str, bytes], bool] | None,
        on_drift: Callable[[Drift], None] | None,
    ) -> str:
        """Report drift from ``since`` to the fetched ``head``; the commit to compare with next."""
        if not since or on_drift is None:
            return since
        drift = self._drift(repo, since, head, bundle, own)
        if drift is not None:
            on_drift(drift)
        return str(head.id) if head is not None else ""

    # --- the one public operation ----------------------------------------------

    def publish(
        self,
        bundle: Bundle,
        *,
        trigger: str,
        refresh: bool = False,
        before_push: Callable[[int], None] | None = None,
        signer: Signer | None = None,
        since: str = "",
        on_drift: Callable[[Drift], None] | None = None,
        own: Callable[[str, bytes], bool] | None = None,
        heads: Iterable[str] = (),
    ) -> PublishResult:
        """Commit ``bundle`` if it differs from the branch, and push it.

        ``refresh`` fetches first and compares every file (the scheduled safety
        net); otherwise the last push of this process is the base, and only the
        changed files are written. A push rejected because the branch moved is
        rebuilt on the new head and retried. ``before_push`` is called with the
        attempt number (tests move the branch there). ``signer`` signs the tree
        again when a signature kept from the branch changed what ``MANIFEST.sig`` covers.

        ``since`` is the last commit the publisher made (or examined): whenever
        it fetches the branch, what others changed since then (``own`` tells the
        files the portal's other writers add, such as audit checkpoints) is
        handed to ``on_drift`` before anything is pushed, and the push then
        restores the signed state under the bundle's roots. ``on_drift`` raising
        stops the publish: nothing is reverted silently.

        ``heads`` are the portal's latest pushes as every worker knows them (the newest
        publication's and audit checkpoint's commits, from the shared database): when
        one is not this process's last push or an ancestor of it, the branch moved since its last
        push, so it is fetched first and the bundle built on it, writing only the
        files that differ from its tree (no rejected push, no full rebuild).
        """
        try:
            self._ensure_remote()
            repo = self._repo()
            pushed = None if refresh else _LAST_PUSHED.get(self._key)
            if pushed is not None and any(not self._behind(repo, pushed.commit, commit) for commit in heads if commit):
                # Another worker (or the audit checkpoint writer) moved the branch since this
                # process's push: catch up with it first rather than have the push rejected.
                pushed = None
            fetched = pushed is None
            if pushed is not None and repo.references.get(self.remote_ref) is not None:
                if pushed.bundle.files[MANIFEST] == bundle.files[MANIFEST]:
                    # MANIFEST.json holds the revision and every file's digest.
                    return PublishResult("unchanged", bundle.revision, pushed.commit)
                base: pygit2.Commit | None = repo[pushed.commit]  # type: ignore[assignment]
                previous: Bundle | None = pushed.bundle
            else:
                fetched = True
                base, previous = self._fetch(repo), None
                since = self._examined(repo, since, base, bundle, own, on_drift)
            for attempt in range(1, self.max_attempts + 1):
                bundle = self._signed(repo, base, bundle, previous, signer)
                changed, stale = self._changes(base, bundle, previous)
                tree = self._tree(repo, base, bundle, changed, stale)
                if base is not None and tree == base.tree.id:
                    _LAST_PUSHED[self._key] = _Pushed(str(base.id), bundle)
                    return PublishResult("unchanged", bundle.revision, str(base.id), attempt, fetched=fetched)
                message, added, removed = self._message(repo, base, bundle, previous, trigger, changed, stale)
                signature = pygit2.Signature(*self.author)
                commit = repo.create_commit(
                    None, signature, signature, message, tree, [base.id] if base is not None else []
                )
                if before_push:
                    before_push(attempt)
                try:
                    self._git("push", "--quiet", self.remote_url, f"{commit}:refs/heads/{self.branch}")
                except _GitFailed as exc:
                    if any(marker in exc.detail for marker in REJECTED_MARKERS) and attempt < self.max_attempts:
                        # Someone else moved the branch: start again from their head.
                        fetched = True
                        base, previous = self._fetch(repo), None
                        since = self._examined(repo, since, base, bundle, own, on_drift)
                        time.sleep(0.05 * attempt)
                        continue
                    raise
                repo.references.create(self.remote_ref, commit, force=True)
                _LAST_PUSHED[self._key] = _Pushed(str(commit), bundle)
                return PublishResult(
                    "published", bundle.revision, str(commit), attempt, added, removed, len(changed), fetched
                )
            raise PublishError(f"the branch kept moving; gave up after {self.max_attempts} attempts")
        except _GitFailed as exc:
            _LAST_PUSHED.pop(self._key, None)
            raise PublishError(f"git {exc.command} failed: {exc.detail}") from exc
        except (OSError, pygit2.GitError) as exc:
            _LAST_PUSHED.pop(self._key, None)
            raise PublishError(f"policy repository unavailable: {exc}") from exc


def _signed_part(path: str, data: bytes) -> str:
    """``header.payload`` of a signature file's token: equal for two signatures by one key over the same claims."""
    try:
        if path == MANIFEST_SIGNATURE:
            return data.decode("ascii").strip().rsplit(".", 1)[0]
        return signed_part(data)
    except (ValueError, KeyError, UnicodeDecodeError):
        return ""


class _GitFailed(Exception):
    def __init__(self, command: str, detail: str) -> None:
        super().__init__(f"git {command}: {detail}")
        self.command = command
        self.detail = detail
