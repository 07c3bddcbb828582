from __future__ import annotations

import json
import subprocess
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from jwcrypto import jwk

from approvals.services import approve_request
from audit.checkpoints import CheckpointRefused, write_checkpoint
from audit.hashing import GENESIS_HASH, chain_hash
from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from audit.sealing import audit_keys, event_seal, head_seal
from audit.verification import PAYLOAD_FIELDS, export_record, verify_chain
from foundation import signing
from tests.audit.test_chain import _tamper


@pytest.fixture
def anchored_repo(policy_repo: Path, settings: Any, tmp_path: Path) -> Path:
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "checkpoint-work"
    return policy_repo


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env={**env, "PATH": "/usr/bin:/bin"}
    ).stdout


def _verify() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out, stderr=StringIO())
    return out.getvalue()


def _approved(submit: Any, approver: Any, **kwargs: Any) -> None:
    approve_request(actor=approver, request=submit(**kwargs), reason="fine")


def _rewrite_everything(reason: str) -> None:
    """What someone with write access to the table and the audit key does: change history, recompute
    every hash, seal and the head. Only the checkpoints outside the database can tell."""
    keys = audit_keys()
    prev = GENESIS_HASH
    for event in AuditEvent.objects.order_by("seq"):
        record = export_record(event)
        record["reason"] = reason
        digest = chain_hash(prev, {name: record[name] for name in PAYLOAD_FIELDS})
        _tamper(
            "UPDATE audit_auditevent SET reason = %s, prev_hash = %s, hash = %s, seal = %s WHERE seq = %s",
            [reason, prev, digest, event_seal(keys, event.seq, digest), event.seq],
        )
        prev = digest
    _roll_head(AuditChainHead.objects.get(pk=1).last_seq, prev)


def _roll_head(seq: int, digest: str) -> None:
    AuditChainHead.objects.filter(pk=1).update(
        last_seq=seq, last_hash=digest, seal=head_seal(audit_keys(), seq, digest)
    )


@pytest.mark.django_db
def test_checkpoint_is_signed_and_pushed_beside_the_bundle(submit: Any, approver: Any, anchored_repo: Path) -> None:
    _approved(submit, approver)
    row = write_checkpoint()
    assert row is not None and row.seq == 3
    assert row.head_hash == AuditEvent.objects.get(seq=3).hash
    document = json.loads(_git("--git-dir", str(anchored_repo), "show", "main:audit/checkpoints/000000000003.json"))
    claims = signing.verify_jws(document["jws"])
    assert claims == {
        "type": "egress-portal.audit-checkpoint",
        "seq": 3,
        "head_hash": row.head_hash,
        "time": document["time"],
    }
    assert row.commit == _git("--git-dir", str(anchored_repo), "rev-parse", "main").strip()
    event = AuditEvent.objects.get(seq=4)
    assert (event.action, event.object_type, event.object_id) == (
        "audit.checkpoint_written",
        "audit.auditcheckpoint",
        str(row.pk),
    )
    assert event.after["commit"] == row.commit
    assert (
        "4 events verified (database, 1 checkpoints checked, every seal checked; anchored by checkpoint #3)"
        in _verify()
    )


@pytest.mark.django_db
def test_an_idle_chain_gets_no_new_checkpoint(submit: Any, approver: Any, anchored_repo: Path) -> None:
    _approved(submit, approver)
    assert write_checkpoint() is not None
    # Only the checkpoint's own event happened since: nothing new to vouch for.
    assert write_checkpoint() is None
    _approved(submit, approver, ticket_ref="CHG-2")
    assert write_checkpoint().seq == 7  # type: ignore[union-attr]
    files = _git("--git-dir", str(anchored_repo), "ls-tree", "--name-only", "main", "audit/checkpoints/").split()
    assert files == ["audit/checkpoints/000000000003.json", "audit/checkpoints/000000000007.json"]


@pytest.mark.django_db
def test_full_rewrite_is_named_with_the_first_checkpoint_it_contradicts(
    submit: Any, approver: Any, anchored_repo: Path
) -> None:
    _approved(submit, approver)
    write_checkpoint()
    _approved(submit, approver, ticket_ref="CHG-2")
    write_checkpoint()
    _rewrite_everything("rubber-stamped")
    # The database alone cannot tell: every hash, seal and the head were recomputed with the key.
    assert verify_chain().ok
    with pytest.raises(CommandError) as failure:
        _verify()
    message = str(failure.value)
    assert "broken at sequence #3: contradicts checkpoint audit/checkpoints/000000000003.json (#3," in message
    assert "history rewritten" in message


@pytest.mark.django_db
def test_truncated_tail_is_named_with_the_checkpoint_beyond_it(submit: Any, approver: Any, anchored_repo: Path) -> None:
    _approved(submit, approver)
    write_checkpoint()
    _approved(submit, approver, ticket_ref="CHG-2")
    write_checkpoint()
    # Remove the second approval and its checkpoint event, and make the head agree.
    _tamper("DELETE FROM audit_auditevent WHERE seq > %s", [4])
    _roll_head(4, AuditEvent.objects.get(seq=4).hash)
    assert verify_chain().ok
    with pytest.raises(CommandError) as failure:
        _verify()
    message = str(failure.value)
    assert "the chain ends at #4 but checkpoint audit/checkpoints/000000000007.json (#7," in message
    assert "events removed from the tail" in message


def _push_file(repo: Path, tmp_path: Path, path: str, data: str) -> None:
    clone = tmp_path / "intruder"
    _git("clone", "-q", str(repo), str(clone))
    (clone / path).parent.mkdir(parents=True, exist_ok=True)
    (clone / path).write_text(data)
    _git("add", path, cwd=clone)
    _git("commit", "-q", "-m", "innocent", cwd=clone)
    _git("push", "-q", "origin", "HEAD:main", cwd=clone)


@pytest.mark.django_db
def test_checkpoint_signed_with_another_key_is_reported_as_forged(
    submit: Any, approver: Any, anchored_repo: Path, tmp_path: Path
) -> None:
    _approved(submit, approver)
    write_checkpoint()
    other_key = jwk.JWK.generate(kty="EC", crv="P-256")
    head = AuditEvent.objects.get(seq=2).hash
    claims = {"type": "egress-portal.audit-checkpoint", "seq": 2, "head_hash": head, "time": "2026-01-01T00:00Z"}
    forged = {**claims, "key_id": other_key.thumbprint(), "jws": signing.sign_jws(claims, key=other_key)}
    _push_file(anchored_repo, tmp_path, "audit/checkpoints/000000000002.json", json.dumps(forged))
    with pytest.raises(CommandError, match=r"audit/checkpoints/000000000002.json: forged or signed by another"):
        _verify()


@pytest.mark.django_db
def test_checkpoint_with_an_edited_clear_text_hash_is_reported(
    submit: Any, approver: Any, anchored_repo: Path, tmp_path: Path
) -> None:
    _approved(submit, approver)
    row = write_checkpoint()
    assert row is not None
    document = json.loads(_git("--git-dir", str(anchored_repo), "show", f"main:{row.path}"))
    document["head_hash"] = "f" * 64
    _push_file(anchored_repo, tmp_path, row.path, json.dumps(document))
    with pytest.raises(CommandError, match=r"the clear-text head_hash differs from the signed one"):
        _verify()


@pytest.mark.django_db
def test_checkpoint_refuses_to_sign_a_chain_that_no_longer_extends_the_last(
    submit: Any, approver: Any, anchored_repo: Path
) -> None:
    _approved(submit, approver)
    write_checkpoint()
    _rewrite_everything("rubber-stamped")
    _approved(submit, approver, ticket_ref="CHG-2")
    with pytest.raises(CheckpointRefused, match="broken at #4: prev_hash does not match"):
        write_checkpoint()
    assert AuditCheckpoint.objects.count() == 1


@pytest.mark.django_db
def test_checkpoint_push_retries_on_a_moved_branch_and_keeps_the_bundle(
    submit: Any, approver: Any, anchored_repo: Path, tmp_path: Path
) -> None:
    _approved(submit, approver)
    call_command("publish_bundle", stdout=StringIO())
    bundle_head = _git("--git-dir", str(anchored_repo), "rev-parse", "main").strip()
    moved: list[int] = []

    def publisher_moves_the_branch(attempt: int) -> None:
        if attempt == 1:
            moved.append(attempt)
            _push_file(anchored_repo, tmp_path, "opa/other-tool.txt", "meanwhile\n")

    head = AuditEvent.objects.count()  # the chain so far, the served bundle's event included
    row = write_checkpoint(before_push=publisher_moves_the_branch)
    assert moved == [1] and row is not None
    log = _git("--git-dir", str(anchored_repo), "log", "--format=%s", "main").splitlines()
    assert log[0].startswith(f"Audit checkpoint #{head}:") and log[1] == "innocent"
    assert _git("--git-dir", str(anchored_repo), "merge-base", "--is-ancestor", bundle_head, "main") == ""
    # The checkpoint commit touched nothing but its own file.
    changed = _git("--git-dir", str(anchored_repo), "show", "--name-only", "--format=", "main").split()
    assert changed == [row.path]
    # A later publish of a changed bundle leaves the checkpoint in place.
    _approved(submit, approver, ticket_ref="CHG-2", destinations=[{"host": "b.partner.example", "port": 443}])
    call_command("publish_bundle", stdout=StringIO())
    assert _git("--git-dir", str(anchored_repo), "log", "-1", "--format=%s", "main").startswith("Egress policy")
    assert json.loads(_git("--git-dir", str(anchored_repo), "show", f"main:{row.path}"))["seq"] == head


@pytest.mark.celery_worker
def test_scheduled_task_writes_the_checkpoint_through_a_real_worker(
    celery_worker: Any, submit: Any, approver: Any, policy_repo: Path
) -> None:
    from audit import tasks

    _approved(submit, approver)
    assert tasks.write_checkpoint.delay().get(timeout=60) == 3
    row = AuditCheckpoint.objects.get()
    assert row.seq == 3 and row.commit == _git("--git-dir", str(policy_repo), "rev-parse", "main").strip()
    assert tasks.write_checkpoint.delay().get(timeout=60) is None


@pytest.mark.django_db
def test_deleted_checkpoint_is_reported_with_the_deleting_commit(
    submit: Any, approver: Any, anchored_repo: Path, tmp_path: Path
) -> None:
    _approved(submit, approver)
    row = write_checkpoint()
    assert row is not None
    clone = tmp_path / "intruder"
    _git("clone", "-q", str(anchored_repo), str(clone))
    _git("rm", "-q", row.path, cwd=clone)
    _git("commit", "-q", "-m", "tidy up", cwd=clone)
    _git("push", "-q", "origin", "HEAD:main", cwd=clone)
    deleting = _git("rev-parse", "HEAD", cwd=clone).strip()
    with pytest.raises(CommandError, match=rf"{row.path}: was deleted from the repository in commit {deleting[:12]}"):
        _verify()


@pytest.mark.django_db
def test_checkpoint_lost_to_a_rewritten_branch_is_reported_from_the_database(
    submit: Any, approver: Any, anchored_repo: Path
) -> None:
    _approved(submit, approver)
    call_command("publish_bundle", stdout=StringIO())
    before = _git("--git-dir", str(anchored_repo), "rev-parse", "main").strip()
    row = write_checkpoint()
    assert row is not None
    # A force-push back to before the checkpoint: no deletion in the history to find.
    _git("--git-dir", str(anchored_repo), "update-ref", "refs/heads/main", before)
    with pytest.raises(CommandError, match=rf"{row.path}: was pushed in commit {row.commit[:12]} but is not on"):
        _verify()


@pytest.mark.django_db
def test_write_checkpoint_command_reports_what_it_pushed(submit: Any, approver: Any, anchored_repo: Path) -> None:
    _approved(submit, approver)
    out = StringIO()
    call_command("write_checkpoint", stdout=out)
    row = AuditCheckpoint.objects.get()
    assert f"Checkpoint #3 ({row.head_hash[:12]}) pushed as audit/checkpoints/000000000003.json" in out.getvalue()
    call_command("write_checkpoint", stdout=out)
    assert "Nothing new since the last checkpoint." in out.getvalue()
    _rewrite_everything("rubber-stamped")
    _approved(submit, approver, ticket_ref="CHG-2")
    with pytest.raises(CommandError, match="No checkpoint written: audit chain broken at #4"):
        call_command("write_checkpoint", stdout=out)
