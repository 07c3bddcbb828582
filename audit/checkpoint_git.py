"""Git I/O for audit checkpoints: one file per checkpoint under ``audit/checkpoints/``.

The bundle publisher writes the same branch. This writer keeps its own bare
clone and builds each commit with git plumbing (the branch's tree plus one
blob), so it never checks out the bundle's files (100,000 of them at scale) and
cannot touch them. When a push is refused because the publisher moved the
branch, it fetches and builds the commit again on the new head. One file per
checkpoint means two writers never edit the same bytes, so there is no merge to
resolve. Knows nothing of Django.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import git

from bundle.policy_repository import is_local_path, with_credentials

CHECKPOINT_DIR = "audit/checkpoints"
# What git prints when a push loses a race with another writer.
_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "failed to update ref", "cannot lock ref")


class CheckpointRepoError(Exception):
    """The policy repository could not be read or written (worth retrying)."""


def checkpoint_path(seq: int) -> str:
    # Zero-padded so the folder lists in chain order.
    return f"{CHECKPOINT_DIR}/{seq:012d}.json"


class CheckpointRepo:
    def __init__(
        self,
        *,
        url: str,
        work_dir: Path,
        branch: str = "main",
        author: tuple[str, str] = ("Egress Portal", "egress-portal@localhost"),
        username: str = "",
        password: str = "",
        max_attempts: int = 5,
    ) -> None:
        self.url = url
        self.remote_url = with_credentials(url, username, password)
        self.work_dir = Path(work_dir)
        self.branch = branch
        self.max_attempts = max_attempts
        self.env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": author[0],
            "GIT_COMMITTER_EMAIL": author[1],
        }

    @property
    def _remote_ref(self) -> str:
        return f"origin/{self.branch}"

    def _repo(self) -> git.Repo:
        if is_local_path(self.url) and not Path(self.url).exists():
            Path(self.url).parent.mkdir(parents=True, exist_ok=True)
            git.Repo.init(self.url, bare=True, initial_branch=self.branch)
        if (self.work_dir / "HEAD").exists():
            repo = git.Repo(self.work_dir)
            if repo.remotes.origin.url != self.remote_url:
                repo.remotes.origin.set_url(self.remote_url)
            return repo
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)
        self.work_dir.parent.mkdir(parents=True, exist_ok=True)
        repo = git.Repo.init(self.work_dir, bare=True, initial_branch=self.branch)
        with repo.config_writer() as config:
            config.set_value("gc", "autoDetach", "false")
        repo.create_remote("origin", self.remote_url)
        return repo

    def _fetch(self, repo: git.Repo) -> bool:
        """Fetch the branch; True when the remote has it."""
        with repo.git.custom_environment(**self.env):
            repo.git.fetch("origin", "--prune")
        return self._remote_ref in [ref.name for ref in repo.remotes.origin.refs]

    def _commit_with(self, repo: git.Repo, path: str, data: bytes, message: str, parent: str | None) -> str:
        """A commit whose tree is ``parent``'s plus ``path`` = ``data``; no working tree involved."""
        scratch = self.work_dir / "egress-checkpoint.blob"
        scratch.write_bytes(data)
        index = self.work_dir / "egress-checkpoint.index"
        index.unlink(missing_ok=True)
        with repo.git.custom_environment(**self.env, GIT_INDEX_FILE=str(index)):
            blob = repo.git.hash_object("-w", str(scratch))
            if parent:
                repo.git.read_tree(parent)
            repo.git.update_index("--add", "--cacheinfo", f"100644,{blob},{path}")
            tree = repo.git.write_tree()
            commit = repo.git.commit_tree(tree, *(["-p", parent] if parent else []), "-m", message)
        index.unlink(missing_ok=True)
        scratch.unlink(missing_ok=True)
        return str(commit)

    def read_all(self) -> dict[str, bytes]:
        """Every checkpoint file on the remote branch, by path (fetches first)."""
        try:
            repo = self._repo()
            if not self._fetch(repo):
                return {}
            try:
                folder = repo.commit(self._remote_ref).tree / CHECKPOINT_DIR
            except KeyError:
                return {}
            return {
                str(blob.path): bytes(blob.data_stream.read())
                for blob in folder.traverse()
                if isinstance(blob, git.Blob) and str(blob.path).endswith(".json")
            }
        except (git.GitError, OSError) as exc:
            raise CheckpointRepoError(self._describe(exc)) from exc

    def deleted(self) -> dict[str, str]:
        """Checkpoint files the branch's history deleted, with the deleting commit (call after read_all).

        Checkpoints are only ever added; a deletion is someone hiding a head.
        """
        try:
            repo = self._repo()
            if self._remote_ref not in [ref.name for ref in repo.remotes.origin.refs]:
                return {}
            log = repo.git.log(
                "--diff-filter=D", "--name-only", "--format=commit %H", self._remote_ref, "--", CHECKPOINT_DIR
            )
        except (git.GitError, OSError) as exc:
            raise CheckpointRepoError(self._describe(exc)) from exc
        found: dict[str, str] = {}
        commit = ""
        for line in log.splitlines():
            if line.startswith("commit "):
                commit = line.removeprefix("commit ")
            elif line.strip():
                found.setdefault(line.strip(), commit)
        return found

    def add(
        self, path: str, data: bytes, *, message: str, before_push: Callable[[int], None] | None = None
    ) -> tuple[str, bytes]:
        """Commit ``data`` at ``path`` on the branch and push; returns the commit and the file's bytes there.

        A file already on the branch at ``path`` is left alone (an earlier run wrote
        this checkpoint) and returned with its commit. ``before_push`` is called with
        the attempt number (tests move the branch there).
        """
        if not path.startswith(CHECKPOINT_DIR + "/"):
            raise ValueError(f"checkpoint files live under {CHECKPOINT_DIR}/, not {path!r}")
        try:
            repo = self._repo()
            for attempt in range(1, self.max_attempts + 1):
                parent = repo.commit(self._remote_ref).hexsha if self._fetch(repo) else None
                if parent:
                    try:
                        existing = repo.commit(parent).tree / path
                    except KeyError:
                        pass
                    else:
                        first = repo.git.log("-1", "--format=%H", parent, "--", path)
                        return str(first), bytes(existing.data_stream.read())
                commit = self._commit_with(repo, path, data, message, parent)
                if before_push:
                    before_push(attempt)
                try:
                    with repo.git.custom_environment(**self.env):
                        repo.git.push("origin", f"{commit}:refs/heads/{self.branch}")
                except git.GitCommandError as exc:
                    text = f"{exc.stderr}{exc.stdout}"
                    if any(marker in text for marker in _REJECTED) and attempt < self.max_attempts:
                        time.sleep(0.05 * attempt)
                        continue
                    raise
                return commit, data
            raise CheckpointRepoError(f"the branch kept moving; gave up after {self.max_attempts} attempts")
        except (git.GitError, OSError) as exc:
            raise CheckpointRepoError(self._describe(exc)) from exc

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, git.GitCommandError):
            detail = (exc.stderr or str(exc)).strip()
            return f"git {exc.command[1] if len(exc.command) > 1 else ''} failed: {detail}".replace(
                self.remote_url, self.url
            )
        return f"policy repository unavailable: {exc}".replace(self.remote_url, self.url)


def remote_reachable(*, url: str, username: str = "", password: str = "", timeout: float = 5.0) -> str:
    """'' when the repository answers ``git ls-remote``; otherwise what went wrong.

    A local path that does not exist yet counts as reachable: the first publish creates it.
    """
    if is_local_path(url) and not Path(url).exists():
        return ""
    remote = with_credentials(url, username, password)
    try:
        subprocess.run(
            ["git", "ls-remote", "--heads", remote],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except subprocess.TimeoutExpired:
        return f"{url}: no answer within {timeout:g} s"
    except (subprocess.CalledProcessError, OSError) as exc:
        stderr = getattr(exc, "stderr", "") or str(exc)
        first = next((line for line in stderr.splitlines() if line.strip()), "git ls-remote failed")
        return f"{url}: {first.replace(remote, url)[:300]}"
    return ""
