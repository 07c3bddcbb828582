"""Git I/O for policy bundles: write the tree, commit when it changed, push, retry on a moved branch.

The caller holds the publisher lock; this module knows nothing of Django.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import git

from exceptions.bundle.compiler import MANIFEST, Bundle

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


@dataclass
class PublishResult:
    status: str  # "published" or "unchanged"
    revision: str
    commit: str = ""
    attempts: int = 1
    added: list[GrantSummary] = field(default_factory=list)
    removed: list[GrantSummary] = field(default_factory=list)


def grants_in(data_json: bytes | None) -> dict[int, GrantSummary]:
    if not data_json:
        return {}
    grants = json.loads(data_json).get("egress", {}).get("grants", {})
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
    from urllib.parse import quote

    return parts._replace(
        netloc=f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.hostname}"
        + (f":{parts.port}" if parts.port else "")
    ).geturl()


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
        self.env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": author[0],
            "GIT_COMMITTER_EMAIL": author[1],
        }

    # --- repository plumbing ---------------------------------------------------

    def _ensure_remote(self) -> None:
        if is_local_path(self.url) and not Path(self.url).exists():
            Path(self.url).parent.mkdir(parents=True, exist_ok=True)
            git.Repo.init(self.url, bare=True, initial_branch=self.branch)

    def _repo(self) -> git.Repo:
        if (self.work_dir / ".git").exists():
            repo = git.Repo(self.work_dir)
            if repo.remotes.origin.url != self.remote_url:
                repo.remotes.origin.set_url(self.remote_url)
            return repo
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)
        self.work_dir.parent.mkdir(parents=True, exist_ok=True)
        repo = git.Repo.init(self.work_dir, initial_branch=self.branch)
        with repo.config_writer() as config:
            # No background "gc --auto" racing the next publish in this cache of a clone.
            config.set_value("gc", "autoDetach", "false")
        repo.create_remote("origin", self.remote_url)
        self._sync(repo)
        return repo

    def _sync(self, repo: git.Repo) -> None:
        """Make the working copy the remote branch (or an empty branch if it has none)."""
        with repo.git.custom_environment(**self.env):
            repo.git.fetch("origin", "--prune")
        remote_ref = f"origin/{self.branch}"
        if remote_ref in [ref.name for ref in repo.remotes.origin.refs]:
            repo.git.checkout("-B", self.branch, remote_ref)
            repo.git.reset("--hard", remote_ref)
        elif repo.head.is_valid():
            # The remote lost the branch: start it again from an empty tree.
            repo.git.checkout("--orphan", "egress-portal-orphan")
            repo.git.rm("-rf", "--ignore-unmatch", "--quiet", ".")
            if self.branch in repo.heads:
                repo.git.branch("-D", self.branch)
            repo.git.branch("-m", self.branch)
        repo.git.clean("-fdx")

    def _root(self) -> Path:
        return self.work_dir / self.subdir if self.subdir else self.work_dir

    def _write(self, repo: git.Repo, bundle: Bundle) -> None:
        """Write the bundle; remove only files an earlier bundle wrote (others' files stay)."""
        root = self._root()
        manifest = root / MANIFEST
        if manifest.exists():
            for stale in set(json.loads(manifest.read_bytes()).get("files", {})) - set(bundle.files):
                target = root / stale
                if target.is_file():
                    target.unlink()
                    parent = target.parent
                    while parent != root and parent.is_dir() and not any(parent.iterdir()):
                        parent.rmdir()
                        parent = parent.parent
        for path, data in bundle.files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_bytes() != data:
                target.write_bytes(data)
        repo.git.add("-A", "--", self.subdir or ".")

    def _pushed_file(self, repo: git.Repo, name: str) -> bytes | None:
        """A file as the remote branch has it (the last fetch or push), or None."""
        remote_ref = f"origin/{self.branch}"
        if remote_ref not in [ref.name for ref in repo.remotes.origin.refs]:
            return None
        try:
            blob = repo.commit(remote_ref).tree / (f"{self.subdir}/{name}" if self.subdir else name)
        except KeyError:
            return None
        return bytes(blob.data_stream.read())

    def _is_pushed(self, repo: git.Repo) -> bool:
        remote_ref = f"origin/{self.branch}"
        return (
            repo.head.is_valid()
            and remote_ref in [ref.name for ref in repo.remotes.origin.refs]
            and repo.head.commit == repo.commit(remote_ref)
        )

    def _already_published(self, repo: git.Repo, bundle: Bundle) -> bool:
        """The fast no-op: the pushed head already carries this exact bundle.

        MANIFEST.json holds the content-digest revision and every file's digest,
        so an identical manifest means identical files; no tree walk, no git add.
        The refreshing safety-net run skips this and compares every file.
        """
        # Not pushed yet (a commit is waiting): not a no-op.
        return self._is_pushed(repo) and self._pushed_file(repo, MANIFEST) == bundle.files[MANIFEST]

    def _has_changes(self, repo: git.Repo) -> bool:
        if not repo.head.is_valid():
            return bool(repo.git.status("--porcelain"))
        return bool(repo.index.diff("HEAD"))

    # --- the one public operation ----------------------------------------------

    def publish(
        self, bundle: Bundle, *, trigger: str, refresh: bool = False, before_push: Callable[[int], None] | None = None
    ) -> PublishResult:
        """Commit ``bundle`` if it differs from the branch, and push it.

        ``refresh`` fetches first (the scheduled safety net). A push rejected
        because the branch moved rebuilds the commit on the new head and retries.
        ``before_push`` is called with the attempt number (tests move the branch there).
        """
        try:
            self._ensure_remote()
            repo = self._repo()
            if refresh:
                self._sync(repo)
            elif self._already_published(repo, bundle):
                return PublishResult("unchanged", bundle.revision, repo.head.commit.hexsha)
            for attempt in range(1, self.max_attempts + 1):
                # Added and removed are counted against what the remote has, so a
                # commit that failed to push is described again when it goes out.
                previous = grants_in(self._pushed_file(repo, "opa/data.json"))
                current = grants_in(bundle.files.get("opa/data.json"))
                added = [current[i] for i in sorted(current.keys() - previous.keys())]
                removed = [previous[i] for i in sorted(previous.keys() - current.keys())]
                self._write(repo, bundle)
                with repo.git.custom_environment(**self.env):
                    if self._has_changes(repo):
                        message = self.work_dir / ".git" / "EGRESS_COMMIT_MSG"
                        message.write_text(commit_message(bundle.revision, added, removed, trigger), encoding="utf-8")
                        repo.git.commit("-q", "-F", str(message))
                    elif self._is_pushed(repo) or not repo.head.is_valid():
                        head = repo.head.commit.hexsha if repo.head.is_valid() else ""
                        return PublishResult("unchanged", bundle.revision, head, attempt)
                    if before_push:
                        before_push(attempt)
                    try:
                        repo.git.push("origin", f"HEAD:refs/heads/{self.branch}")
                    except git.GitCommandError as exc:
                        text = f"{exc.stderr}{exc.stdout}"
                        if any(marker in text for marker in REJECTED_MARKERS) and attempt < self.max_attempts:
                            # Someone else moved the branch: start again from their head.
                            self._sync(repo)
                            time.sleep(0.05 * attempt)
                            continue
                        raise
                return PublishResult("published", bundle.revision, repo.head.commit.hexsha, attempt, added, removed)
            raise PublishError(f"the branch kept moving; gave up after {self.max_attempts} attempts")
        except git.GitCommandError as exc:
            detail = (exc.stderr or str(exc)).strip().replace(self.remote_url, self.url)
            raise PublishError(f"git {exc.command[1] if len(exc.command) > 1 else ''} failed: {detail}") from exc
        except (OSError, git.GitError) as exc:
            raise PublishError(f"policy repository unavailable: {exc}") from exc
