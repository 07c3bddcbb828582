"""Seals: someone with the database but not the audit key cannot rewrite or remove any event, the newest included."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from approvals.services import approve_request
from audit.checkpoints import write_checkpoint
from audit.models import AuditEvent
from audit.selectors import chain_status
from audit.services import COPY_THRESHOLD, SYSTEM, PendingEvent, record_event, record_events
from audit.verification import verify_chain
from exceptions.models import Team

OTHER_KEY = "another-audit-key-for-the-rotation-test-0123456789"


@pytest.fixture
def anchored_repo(policy_repo: Path, settings: Any, tmp_path: Path) -> Path:
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "checkpoint-work"
    return policy_repo


def _verify(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("verify_audit", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _sql(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Raw SQL as the database's owner runs it: on PostgreSQL the owner switches the append-only trigger off."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params or [])
        rows = list(cursor.fetchall()) if cursor.description else []
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    return rows


COLUMNS = (
    "seq, created_at, actor_id, actor_kind, actor_label, action, object_type, object_id, "
    "before, after, reason, request_id, context, prev_hash"
)


def _rehash(row: tuple[Any, ...]) -> str:
    """The chain hash computed with hashlib and json alone, as the attacker in issue 17 did."""
    seq, created_at, actor_id, kind, label, action, otype, oid, before, after, reason, request_id, context, prev = row
    moment = created_at if isinstance(created_at, datetime) else datetime.fromisoformat(created_at)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def loaded(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    payload = {
        "seq": seq,
        "created_at": moment.isoformat(),
        "actor_id": actor_id,
        "actor_kind": kind,
        "actor_label": label,
        "action": action,
        "object_type": otype,
        "object_id": oid,
        "before": loaded(before),
        "after": loaded(after),
        "reason": reason,
        "request_id": request_id,
    }
    if loaded(context):
        payload["context"] = loaded(context)
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev.encode() + canonical.encode()).hexdigest()


def _rewrite_newest(*, actor_id: int, actor_label: str, reason: str) -> int:
    """Change the newest event's actor and reason, recompute its hash and the head: SQL and hashlib only."""
    (seq,) = _sql("SELECT MAX(seq) FROM audit_auditevent")[0]
    row = list(_sql(f"SELECT {COLUMNS} FROM audit_auditevent WHERE seq = %s", [seq])[0])  # noqa: S608
    row[2], row[4], row[10] = actor_id, actor_label, reason
    digest = _rehash(tuple(row))
    _sql(
        "UPDATE audit_auditevent SET actor_id = %s, actor_label = %s, reason = %s, hash = %s WHERE seq = %s",
        [actor_id, actor_label, reason, digest, seq],
    )
    _sql("UPDATE audit_auditchainhead SET last_hash = %s WHERE id = 1", [digest])
    return int(seq)


def _approved(submit: Any, approver: Any, **kwargs: Any) -> Any:
    return approve_request(actor=approver, request=submit(**kwargs), reason="fine")


@pytest.mark.django_db
def test_rewriting_the_newest_event_with_sql_and_hashlib_is_named_by_verify_audit(
    submit: Any, approver: Any, requester: Any, anchored_repo: Path
) -> None:
    _approved(submit, approver)
    write_checkpoint()
    _approved(submit, approver, ticket_ref="CHG-2")
    seq = _rewrite_newest(actor_id=requester.pk, actor_label=requester.username, reason="approved by myself")
    # The forgery is a consistent chain: only the seal, made with a key the database never held, tells.
    assert AuditEvent.objects.get(seq=seq).actor_label == "alice"
    with pytest.raises(CommandError) as failure:
        _verify()
    assert f"broken at sequence #{seq}: event #{seq} does not match its seal" in str(failure.value)
    # The audit page says so at once, without walking the chain.
    status = chain_status()
    assert status.state == "contradicted"
    assert status.message == (
        f"The newest event (#{seq}) does not match its seal (rewritten without the audit key). "
        "Run manage.py verify_audit."
    )
    # And a checkpoint is no longer written over it.
    with pytest.raises(Exception, match=rf"broken at #{seq}: event #{seq} does not match its seal"):
        write_checkpoint()


@pytest.mark.django_db
def test_removing_the_newest_event_and_rolling_the_head_back_is_found(
    submit: Any, approver: Any, anchored_repo: Path
) -> None:
    _approved(submit, approver)
    (newest,) = _sql("SELECT MAX(seq) FROM audit_auditevent")[0]
    _sql("DELETE FROM audit_auditevent WHERE seq = %s", [newest])
    (previous_hash,) = _sql("SELECT hash FROM audit_auditevent WHERE seq = %s", [newest - 1])[0]
    _sql("UPDATE audit_auditchainhead SET last_seq = %s, last_hash = %s WHERE id = 1", [newest - 1, previous_hash])
    with pytest.raises(CommandError) as failure:
        _verify()
    message = str(failure.value)
    assert f"broken at sequence #{newest - 1}: the chain head (#{newest - 1}) does not match its seal" in message
    assert chain_status().message.startswith(f"The chain head (#{newest - 1}) does not match its seal")
    # Writing on must not launder the rollback: the next event says the head was not sealed.
    with transaction.atomic():
        record_event(actor=SYSTEM, action="team.touched", obj=Team.objects.create(name="T", slug="t"))
    assert AuditEvent.objects.get(seq=newest).action == "audit.head_seal_invalid"
    with pytest.raises(CommandError, match=rf"event #{newest} records that the chain head \(#{newest - 1}\)"):
        _verify()


@pytest.mark.django_db
def test_an_event_without_a_seal_or_with_an_unknown_key_is_named(
    submit: Any, approver: Any, anchored_repo: Path
) -> None:
    _approved(submit, approver)
    _sql("UPDATE audit_auditevent SET seal = '' WHERE seq = 2")
    with pytest.raises(CommandError, match=r"broken at sequence #2: event #2 has no seal"):
        _verify()
    good = AuditEvent.objects.get(seq=1)
    _sql("UPDATE audit_auditevent SET seal = %s, seal_key_id = 'feedfacefeedface' WHERE seq = 2", [good.seal])
    with pytest.raises(CommandError, match=r"#2: event #2 is sealed with an unknown audit key 'feedfacefeedface'"):
        _verify()


@pytest.mark.django_db
def test_a_rotated_key_verifies_old_seals_only_while_it_is_listed_as_retired(
    submit: Any, approver: Any, anchored_repo: Path, settings: Any
) -> None:
    _approved(submit, approver)
    old = settings.EGRESS_AUDIT_KEY
    settings.EGRESS_AUDIT_KEY, settings.EGRESS_AUDIT_KEY_RETIRED = OTHER_KEY, old
    _approved(submit, approver, ticket_ref="CHG-2")
    assert {e.seal_key_id for e in AuditEvent.objects.all()} == {
        AuditEvent.objects.get(seq=1).seal_key_id,
        AuditEvent.objects.get(seq=6).seal_key_id,
    }
    assert "6 events verified" in _verify()[0]
    settings.EGRESS_AUDIT_KEY_RETIRED = ""
    with pytest.raises(CommandError, match=r"#1: event #1 is sealed with an unknown audit key"):
        _verify()
    # A head sealed with a key the portal does not know is a configuration error: nothing is recorded.
    settings.EGRESS_AUDIT_KEY, settings.EGRESS_AUDIT_KEY_RETIRED = old, ""
    with pytest.raises(ImproperlyConfigured, match="neither EGRESS_AUDIT_KEY"), transaction.atomic():
        record_event(actor=SYSTEM, action="team.touched", obj=Team.objects.create(name="T", slug="t"))


@pytest.mark.django_db
def test_without_the_audit_key_nothing_is_recorded_and_nothing_verifies(
    submit: Any, approver: Any, anchored_repo: Path, settings: Any
) -> None:
    _approved(submit, approver)
    settings.EGRESS_AUDIT_KEY = ""
    with pytest.raises(CommandError, match=r"Audit seals not checked: EGRESS_AUDIT_KEY \(or EGRESS_AUDIT_KEY_FILE\)"):
        _verify()
    with pytest.raises(ImproperlyConfigured, match="EGRESS_AUDIT_KEY"), transaction.atomic():
        record_event(actor=SYSTEM, action="team.touched", obj=Team.objects.create(name="T", slug="t"))
    settings.EGRESS_AUDIT_KEY = "short"
    with pytest.raises(ImproperlyConfigured, match="needs at least 32"):
        verify_chain()


@pytest.mark.django_db
def test_verify_audit_fails_closed_when_the_anchors_are_unreachable(
    submit: Any, approver: Any, requester: Any, settings: Any, tmp_path: Path
) -> None:
    _approved(submit, approver)
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "checkpoint-work"
    settings.POLICY_REPO_URL = "http://127.0.0.1:9/policy.git"
    with pytest.raises(CommandError) as failure:
        _verify()
    message = str(failure.value)
    assert "Audit anchors not checked: the checkpoints in the policy repository could not be read" in message
    assert "--no-anchors" in message
    # An explicit local check: warned about, and still checks every seal.
    out, err = _verify("--no-anchors")
    assert "Audit chain intact: 3 events verified (database, every seal checked)." in out
    assert "WARNING: --no-anchors: checkpoints in the policy repository were not checked" in err
    seq = _rewrite_newest(actor_id=requester.pk, actor_label="alice", reason="mine")
    with pytest.raises(CommandError, match=rf"#{seq}: event #{seq} does not match its seal"):
        _verify("--no-anchors")


@pytest.mark.django_db
def test_an_export_without_its_signed_header_or_checkpoint_fails_unless_checked_locally(
    client: Any, auditor: Any, submit: Any, approver: Any, anchored_repo: Path, tmp_path: Path
) -> None:
    _approved(submit, approver)
    client.force_login(auditor)
    body = b"".join(client.get("/audit/export/events.jsonl").streaming_content).decode()
    unanchored = tmp_path / "unanchored.jsonl"
    unanchored.write_text(body)
    with pytest.raises(CommandError, match=r"header carries no signed checkpoint"):
        _verify("--export", str(unanchored))
    write_checkpoint()
    body = b"".join(client.get("/audit/export/events.jsonl").streaming_content).decode()
    headerless = tmp_path / "headerless.jsonl"
    headerless.write_text("\n".join(body.splitlines()[1:]) + "\n")
    with pytest.raises(CommandError, match=r"the export has no header with a signed checkpoint"):
        _verify("--export", str(headerless))
    out, err = _verify("--export", str(headerless), "--no-anchors")
    assert "4 events verified" in out and "WARNING: --no-anchors" in err


def _as_before_seals() -> None:
    """The chain as an older portal left it: no seal on any event or on the head."""
    _sql("UPDATE audit_auditevent SET seal = '', seal_key_id = ''")
    _sql("UPDATE audit_auditchainhead SET seal = '', seal_key_id = '' WHERE id = 1")


@pytest.mark.django_db
def test_seal_audit_seals_the_events_written_before_seals_once_the_chain_holds(
    submit: Any, approver: Any, anchored_repo: Path
) -> None:
    _approved(submit, approver)
    write_checkpoint()
    _as_before_seals()
    with pytest.raises(CommandError, match=r"broken at sequence #1: event #1 has no seal"):
        _verify()
    # The portal keeps recording meanwhile: an unsealed head over unsealed events is no rollback.
    with transaction.atomic():
        record_event(actor=SYSTEM, action="team.touched", obj=Team.objects.create(name="T", slug="t"))
    assert AuditEvent.objects.filter(action="audit.head_seal_invalid").count() == 0
    out = StringIO()
    # Event #4 (the checkpoint's own record) is after the checkpoint: only a person's word seals it.
    with pytest.raises(CommandError, match=r"events #4 to #4 have no seal and come after the newest checkpoint \(#3\)"):
        call_command("seal_audit", stdout=out)
    assert not AuditEvent.objects.filter(seq__lte=4).exclude(seal="").exists()
    err = StringIO()
    call_command("seal_audit", "--vouch-unanchored", stdout=out, stderr=err)
    assert "WARNING: --vouch-unanchored" in err.getvalue()
    assert "Sealed 4 audit events written before seals existed." in out.getvalue()
    sealed = AuditEvent.objects.order_by("-seq").first()
    assert sealed is not None and sealed.action == "audit.history_sealed"
    assert sealed.after == {
        "sealed": 4,
        "first_seq": 1,
        "last_seq": 4,
        "anchored_seq": 3,
        "vouched_unanchored": [4, 4],
        "key_id": sealed.seal_key_id,
    }
    assert "6 events verified" in _verify()[0]
    call_command("seal_audit", stdout=out)
    assert "Every audit event is sealed already." in out.getvalue()
    # Once only: blanking every seal afterwards (to pass a rollback off as old history) is refused.
    _as_before_seals()
    with pytest.raises(CommandError, match=r"Not sealed: the history was sealed already \(event #6\), yet 6 events"):
        call_command("seal_audit", stdout=out)


@pytest.mark.django_db
def test_seal_audit_refuses_a_removed_seal_and_a_rewritten_chain(
    submit: Any, approver: Any, requester: Any, anchored_repo: Path
) -> None:
    _approved(submit, approver)
    _sql("UPDATE audit_auditevent SET seal = '' WHERE seq = 3")
    with pytest.raises(CommandError, match=r"Not sealed: event #3 has no seal but event #1 before it has one"):
        call_command("seal_audit", stdout=StringIO())
    _as_before_seals()
    _rewrite_newest(actor_id=requester.pk, actor_label="alice", reason="mine")
    _sql("UPDATE audit_auditevent SET reason = 'edited' WHERE seq = 1")
    with pytest.raises(CommandError, match=r"Not sealed: audit chain broken at #1: content does not match its hash"):
        call_command("seal_audit", stdout=StringIO())
    assert not AuditEvent.objects.exclude(seal="").exists()


@pytest.mark.django_db
def test_a_bulk_job_seals_every_event_it_writes_through_copy_too(team: Team) -> None:
    with transaction.atomic():
        record_events([PendingEvent(SYSTEM, "team.touched", "exceptions.team", str(team.pk))] * (COPY_THRESHOLD + 1))
    assert not AuditEvent.objects.filter(seal="").exists()
    assert verify_chain().ok and verify_chain().checked == COPY_THRESHOLD + 1


@pytest.mark.django_db
def test_seal_audit_will_not_launder_a_rewrite_made_after_stripping_every_seal(
    submit: Any, approver: Any, requester: Any, anchored_repo: Path
) -> None:
    """Strip every seal, rewrite the newest event and the head (no key needed), then ask for
    history to be sealed: the rewritten event is after the newest checkpoint and stays unsealed."""
    _approved(submit, approver)
    write_checkpoint()
    _approved(submit, approver, ticket_ref="CHG-2")
    _as_before_seals()
    seq = _rewrite_newest(actor_id=requester.pk, actor_label=requester.username, reason="approved by myself")
    with pytest.raises(CommandError, match=rf"events #\d+ to #{seq} have no seal and come after the newest checkpoint"):
        call_command("seal_audit", stdout=StringIO())
    assert not AuditEvent.objects.exclude(seal="").exists()
    with pytest.raises(CommandError, match=r"has no seal"):
        _verify()


@pytest.mark.django_db
def test_verify_audit_says_when_nothing_anchors_the_chain_and_fails_once_anchors_went_missing(
    submit: Any, approver: Any, anchored_repo: Path, settings: Any, tmp_path: Path
) -> None:
    from exceptions.services.publications import publish_bundle

    _approved(submit, approver)
    publish_bundle(trigger="test")  # the repository exists, no checkpoint in it yet
    out, _ = _verify()
    assert "Audit chain intact" in out and "No checkpoint yet: nothing outside the database vouches" in out
    assert write_checkpoint() is not None
    assert "No checkpoint yet" not in _verify()[0]
    # Another (or an emptied) repository: the chain records checkpoints it no longer holds.
    settings.POLICY_REPO_URL = str(tmp_path / "elsewhere.git")
    settings.POLICY_WORK_DIR = tmp_path / "elsewhere-work"
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "elsewhere-checkpoints"
    publish_bundle(trigger="test", refresh=True)
    with pytest.raises(CommandError, match=r"was pushed in commit \w+ but is not on the branch"):
        _verify()
    # With the database's own list of pushed checkpoints deleted too, the sealed event still tells.
    _sql("DELETE FROM audit_auditcheckpoint")
    with pytest.raises(CommandError, match=r"Audit anchors missing: event #\d+ records a checkpoint"):
        _verify()
