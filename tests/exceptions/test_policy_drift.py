"""Drift: commits pushed to the policy branch by someone else are recorded, announced and then undone."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from approvals.services import approve_request
from audit.checkpoints import write_checkpoint
from audit.models import AuditEvent
from exceptions.models import PolicyDrift
from exceptions.services.publications import publish_bundle
from foundation.outbox.models import OutboxMessage
from tests.factories import UserFactory
from webhooks.models import WebhookDelivery
from webhooks.services import create_subscription

pytestmark = pytest.mark.django_db

FORGED = "teams/payments/cilium/payments/egress-everything.yaml"
FORGED_POLICY = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: egress-everything, namespace: payments}
spec:
  endpointSelector: {}
  egress:
    - toFQDNs:
        - matchPattern: "*"
"""


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def branch_paths(remote: Path) -> set[str]:
    return set(git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main").split())


def push_foreign_commit(remote: Path, tmp_path: Path, edit: dict[str, str], *, delete: tuple[str, ...] = ()) -> str:
    """Someone with write access to the policy repository pushes a commit of their own."""
    clone = tmp_path / f"mallory-{len(list(tmp_path.glob('mallory-*')))}"
    git("clone", "--quiet", str(remote), str(clone))
    for path, text in edit.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(text)
    for path in delete:
        (clone / path).unlink()
    git("add", "-A", cwd=clone)
    git("-c", "user.name=Mallory", "-c", "user.email=mallory@example.org", "commit", "-qm", "Open egress", cwd=clone)
    git("push", "--quiet", "origin", "HEAD:main", cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone).strip()


@pytest.fixture
def published(policy_repo: Path, submit: Any, approver: Any, settings: Any, tmp_path: Path) -> Path:
    settings.EGRESS_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "checkpoint-work"
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    create_subscription(actor=admin, url="http://127.0.0.1:9/hook", events=["policy.drift_detected"])
    approve_request(actor=approver, request=submit())
    assert publish_bundle(trigger="approve").status == "published"
    return policy_repo


def test_a_forged_cilium_policy_is_recorded_announced_listed_and_then_restored(
    published: Path,
    tmp_path: Path,
    submit: Any,
    approver: Any,
    security_officer: Any,
) -> None:
    signed = {path: git("--git-dir", str(published), "show", f"main:{path}") for path in branch_paths(published)}
    [team_policy] = [path for path in signed if path.startswith("teams/payments/cilium/")]
    forged_commit = push_foreign_commit(published, tmp_path, {FORGED: FORGED_POLICY, team_policy: FORGED_POLICY})
    # The next grant change publishes: its push is refused, the branch fetched, the drift found.
    approve_request(actor=approver, request=submit(destinations=[{"host": "cdn.partner.example", "port": 443}]))
    publication = publish_bundle(trigger="approve")
    assert publication.status == "published"

    [drift] = PolicyDrift.objects.all()
    assert drift.head_commit == forged_commit and not drift.rewritten
    assert sorted(drift.paths, key=lambda p: p["change"]) == [
        {"path": FORGED, "change": "added", "restored": True},
        {"path": team_policy, "change": "modified", "restored": True},
    ]
    assert [(c["sha"], c["author"], c["subject"]) for c in drift.commits] == [
        (forged_commit, "Mallory <mallory@example.org>", "Open egress")
    ]
    [event] = AuditEvent.objects.filter(action="policy.drift_detected")
    assert event.object_id == str(drift.pk) and event.after["head"] == forged_commit
    assert event.seq < AuditEvent.objects.get(action="bundle.published", object_id=str(publication.pk)).seq
    [delivery] = WebhookDelivery.objects.filter(event="policy.drift_detected")
    assert FORGED in [p["path"] for p in delivery.body["data"]["drift"]["paths"]]
    assert OutboxMessage.objects.filter(kind="webhook").exists()

    # Restored: the forged file is gone, the team's policy is the portal's again, the tree verifies.
    assert FORGED not in branch_paths(published)
    restored = git("--git-dir", str(published), "show", f"main:{team_policy}")
    assert restored != FORGED_POLICY and "cdn.partner.example" in restored
    checkout = tmp_path / "checkout"
    git("clone", "--quiet", str(published), str(checkout))
    call_command("verify_bundle", str(checkout), stdout=io.StringIO())

    client = Client()
    client.force_login(security_officer)
    page = client.get("/operations/").content.decode()
    assert FORGED in page and forged_commit[:12] in page and "Mallory" in page

    # Found once: the next publishes do not report it again.
    cache.clear()
    publish_bundle(trigger="refresh", refresh=True)
    assert PolicyDrift.objects.count() == 1
    assert AuditEvent.objects.filter(action="policy.drift_detected").count() == 1


def test_the_scheduled_refresh_finds_drift_without_a_grant_change(published: Path, tmp_path: Path) -> None:
    signed = set(branch_paths(published))
    push_foreign_commit(published, tmp_path, {}, delete=("MANIFEST.sig",))
    publication = publish_bundle(trigger="refresh", refresh=True)
    assert publication.status == "published"
    [drift] = PolicyDrift.objects.all()
    assert drift.paths == [{"path": "MANIFEST.sig", "change": "deleted", "restored": True}]
    assert branch_paths(published) == signed


def test_a_foreign_file_outside_the_bundle_is_reported_and_left_in_place(published: Path, tmp_path: Path) -> None:
    push_foreign_commit(published, tmp_path, {"README.md": "The egress policy.\n"})
    assert publish_bundle(trigger="refresh", refresh=True).status == "unchanged"
    [drift] = PolicyDrift.objects.all()
    assert drift.paths == [{"path": "README.md", "change": "added", "restored": False}]
    assert "README.md" in branch_paths(published)


def test_an_audit_checkpoint_the_portal_pushed_is_not_drift(published: Path, submit: Any, approver: Any) -> None:
    assert write_checkpoint() is not None  # a commit on the branch the publisher did not make
    approve_request(actor=approver, request=submit(destinations=[{"host": "cdn.partner.example", "port": 443}]))
    publication = publish_bundle(trigger="approve")  # fetched first: the checkpoint commit is one it never saw
    assert publication.status == "published" and publication.attempts == 1
    assert publish_bundle(trigger="refresh", refresh=True).status == "unchanged"
    assert not PolicyDrift.objects.exists()
    assert not AuditEvent.objects.filter(action="policy.drift_detected").exists()


def test_a_planted_checkpoint_is_drift(published: Path, tmp_path: Path) -> None:
    planted = "audit/checkpoints/000000000999.json"
    push_foreign_commit(published, tmp_path, {planted: '{"seq": 999, "jws": "e30.e30.AAAA"}\n'})
    publish_bundle(trigger="refresh", refresh=True)
    [drift] = PolicyDrift.objects.all()
    assert drift.paths == [{"path": planted, "change": "added", "restored": False}]


def test_a_genuine_checkpoint_carrying_a_policy_in_another_folder_is_drift(published: Path, tmp_path: Path) -> None:
    """The portal's own checkpoint, with a CiliumNetworkPolicy's keys added and put in a subfolder,
    is not the portal's: reported, not waved through as a checkpoint."""
    assert write_checkpoint() is not None
    publish_bundle(trigger="refresh", refresh=True)  # the portal's own checkpoint: no drift
    assert not PolicyDrift.objects.exists()
    [name] = [
        line
        for line in git("--git-dir", str(published), "ls-tree", "-r", "--name-only", "main").splitlines()
        if line.startswith("audit/checkpoints/")
    ]
    document = json.loads(git("--git-dir", str(published), "show", f"main:{name}"))
    planted = "audit/checkpoints/cilium/" + name.rsplit("/", 1)[-1]
    forged = {**document, "kind": "CiliumNetworkPolicy", "spec": {"egress": [{"toFQDNs": [{"matchPattern": "*"}]}]}}
    push_foreign_commit(published, tmp_path, {planted: json.dumps(forged)})
    publish_bundle(trigger="refresh", refresh=True)
    [drift] = PolicyDrift.objects.all()
    assert drift.paths == [{"path": planted, "change": "added", "restored": False}]


def test_a_rollback_to_an_older_signed_tree_is_drift(published: Path, submit: Any, approver: Any) -> None:
    first = git("--git-dir", str(published), "rev-parse", "main").strip()
    approve_request(actor=approver, request=submit(destinations=[{"host": "cdn.partner.example", "port": 443}]))
    newest = publish_bundle(trigger="approve").commit
    # Someone force-pushes the branch back to the older tree: validly signed, but not the newest state.
    git("--git-dir", str(published), "update-ref", "refs/heads/main", first)
    publication = publish_bundle(trigger="refresh", refresh=True)
    [drift] = PolicyDrift.objects.all()
    assert drift.rewritten and (drift.since_commit, drift.head_commit) == (newest, first)
    assert {"path": "MANIFEST.json", "change": "modified", "restored": True} in drift.paths
    assert publication.status == "published"
    assert git("--git-dir", str(published), "show", "main:MANIFEST.json") == git(
        "--git-dir", str(published), "show", f"{newest}:MANIFEST.json"
    )
