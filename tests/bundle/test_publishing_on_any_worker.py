"""Publishing from any worker process: a publisher whose clone is behind catches up instead of being rejected.

Each worker process has its own work dir (bare cache clone) and its own memory of its last push; the
portal's newest pushes (``heads``: the newest publication's and audit checkpoint's commits, in the shared
database) tell it when the branch moved since.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from approvals.services import approve_request
from audit.checkpoints import write_checkpoint
from bundle.compiler import compile_bundle
from bundle.policy_repository import _LAST_PUSHED, PolicyRepository
from exceptions.models import BundlePublication, PolicyDrift
from exceptions.services.policy_drift import portal_heads
from exceptions.services.publications import publish_bundle
from tests.bundle.fixtures import NOW, sample_records


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def changed_paths(remote: Path) -> set[str]:
    return set(git("--git-dir", str(remote), "diff", "--name-only", "main~1", "main").split())


def test_two_workers_publishing_alternately_catch_up_without_a_rejected_push_or_a_rebuild(tmp_path: Path) -> None:
    remote = tmp_path / "policy.git"
    workers = [PolicyRepository(url=str(remote), work_dir=tmp_path / name) for name in ("worker-a", "worker-b")]
    records = sample_records()[:6]  # the seventh has expired
    last = workers[0].publish(compile_bundle(records[:1], now=NOW), trigger="first")
    workers[1].publish(compile_bundle(records[:1], now=NOW), trigger="warm b", heads=[last.commit])
    before = compile_bundle(records[:1], now=NOW)
    for step in range(2, len(records) + 1):
        worker = workers[step % 2]
        bundle = compile_bundle(records[:step], now=NOW)
        result = worker.publish(bundle, trigger=f"grant {step}", heads=[last.commit])
        assert result.status == "published" and result.attempts == 1, step
        # The other worker pushed last (from the second round on): fetched, then only the changed files
        # written (not the whole tree).
        assert result.fetched == (step > 2), step
        expected = {path for path, sha in bundle.digests.items() if before.digests.get(path) != sha}
        assert result.written == len(expected) < len(bundle.files)
        assert changed_paths(remote) == expected
        assert [g.id for g in result.added] == [records[step - 1].id] and not result.removed
        last, before = result, bundle
    # The same worker again, nobody else in between: no fetch at all.
    revoked = compile_bundle(records[:-1], now=NOW)
    again = workers[len(records) % 2].publish(revoked, trigger="revoke", heads=[last.commit])
    assert again.attempts == 1 and not again.fetched and [g.id for g in again.removed] == [records[-1].id]


def test_worker_processes_sharing_one_work_dir_catch_up_too(tmp_path: Path) -> None:
    """Two processes on one machine share the cache clone (its objects) but not their memory of a push."""
    remote = tmp_path / "policy.git"
    records = sample_records()[:6]
    shared = PolicyRepository(url=str(remote), work_dir=tmp_path / "work")
    first = shared.publish(compile_bundle(records[:2], now=NOW), trigger="process a")
    memory_a = dict(_LAST_PUSHED)
    _LAST_PUSHED.clear()  # process b: the same work dir, no memory yet
    second = shared.publish(compile_bundle(records[:3], now=NOW), trigger="process b", heads=[first.commit])
    assert second.status == "published" and second.attempts == 1
    _LAST_PUSHED.clear()
    _LAST_PUSHED.update(memory_a)  # process a again: process b's commit is in the cache, but a never built on it
    bundle = compile_bundle(records[:4], now=NOW)
    third = shared.publish(bundle, trigger="process a again", heads=[second.commit])
    assert third.status == "published" and third.attempts == 1 and third.fetched
    assert third.written == len(changed_paths(remote)) < len(bundle.files)
    assert [g.id for g in third.added] == [records[3].id]


def test_without_the_shared_heads_a_stale_worker_is_rejected_once(tmp_path: Path) -> None:
    """What the shared heads prevent (and the fallback when the database lags a push): one rejected push."""
    remote = tmp_path / "policy.git"
    a, b = (PolicyRepository(url=str(remote), work_dir=tmp_path / name) for name in ("worker-a", "worker-b"))
    records = sample_records()[:6]  # the seventh has expired
    a.publish(compile_bundle(records[:1], now=NOW), trigger="a")
    b.publish(compile_bundle(records[:2], now=NOW), trigger="b")
    bundle = compile_bundle(records[:3], now=NOW)
    result = a.publish(bundle, trigger="a again")
    assert result.attempts == 2 and result.fetched
    # Even then the new head is caught up with by blob ids: only the changed files are written.
    assert result.written == len(changed_paths(remote)) < len(bundle.files)


@pytest.fixture
def two_workers(policy_repo: Path, settings: Any, tmp_path: Path) -> list[Path]:
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "checkpoint-work"
    return [tmp_path / "worker-a", tmp_path / "worker-b"]


@pytest.mark.django_db
def test_publish_bundle_from_two_work_dirs_pushes_every_time_at_the_first_attempt(
    two_workers: list[Path], settings: Any, submit: Any, approver: Any
) -> None:
    for step in range(4):
        settings.POLICY_WORK_DIR = two_workers[step % 2]  # each worker process has its own clone
        approve_request(actor=approver, request=submit(destinations=[{"host": f"api{step}.example.org", "port": 443}]))
        publication = publish_bundle(trigger=f"approve {step}")
        assert publication.status == "published" and publication.attempts == 1, step
    assert not PolicyDrift.objects.exists()


@pytest.mark.django_db
def test_an_audit_checkpoint_between_two_publishes_does_not_make_the_next_one_rebuild(
    two_workers: list[Path], settings: Any, submit: Any, approver: Any
) -> None:
    settings.POLICY_WORK_DIR = two_workers[0]
    approve_request(actor=approver, request=submit())
    first = publish_bundle(trigger="approve")
    checkpoint = write_checkpoint()  # pushed to the same branch by the audit writer
    assert checkpoint is not None and checkpoint.commit in portal_heads()
    approve_request(actor=approver, request=submit(destinations=[{"host": "cdn.partner.example", "port": 443}]))
    second = publish_bundle(trigger="approve")
    assert second.status == "published" and second.attempts == 1
    assert git("--git-dir", str(settings.POLICY_REPO_URL), "rev-parse", "main~1").strip() == checkpoint.commit
    assert first.commit != second.commit and not PolicyDrift.objects.exists()


@pytest.mark.django_db
def test_drift_behind_a_checkpoint_is_still_found_when_the_worker_catches_up(
    two_workers: list[Path], settings: Any, submit: Any, approver: Any, tmp_path: Path
) -> None:
    settings.POLICY_WORK_DIR = two_workers[0]
    approve_request(actor=approver, request=submit())
    publish_bundle(trigger="approve")
    clone = tmp_path / "mallory"
    git("clone", "--quiet", str(settings.POLICY_REPO_URL), str(clone))
    (clone / "MANIFEST.sig").unlink()
    git("add", "-A", cwd=clone)
    git("-c", "user.name=Mallory", "-c", "user.email=m@example.org", "commit", "-qm", "drop", cwd=clone)
    git("push", "--quiet", "origin", "HEAD:main", cwd=clone)
    assert write_checkpoint() is not None  # on top of the foreign commit
    approve_request(actor=approver, request=submit(destinations=[{"host": "cdn.partner.example", "port": 443}]))
    publication = publish_bundle(trigger="approve")
    assert publication.status == "published" and publication.attempts == 1
    [drift] = PolicyDrift.objects.all()
    assert drift.paths == [{"path": "MANIFEST.sig", "change": "deleted", "restored": True}]
    assert "MANIFEST.sig" in git("--git-dir", str(settings.POLICY_REPO_URL), "ls-tree", "--name-only", "main")
    assert BundlePublication.objects.filter(attempts__gt=1).count() == 0
