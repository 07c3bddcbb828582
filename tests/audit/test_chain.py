from __future__ import annotations

import threading
from io import StringIO
from itertools import pairwise
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from approvals.services import approve_request
from audit.hashing import GENESIS_HASH
from audit.models import AuditEvent
from audit.services import SYSTEM, record_event
from audit.verification import verify_chain
from exceptions.models import Team


def _verify() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_events_are_chained_in_sequence(submit: Any, approver: Any) -> None:
    approve_request(actor=approver, request=submit(), reason="fine")
    rows = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in rows] == list(range(1, len(rows) + 1))
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(rows))
    assert [e.action for e in rows] == ["request.submitted", "request.approved", "grant.issued"]
    assert rows[1].actor_label == "bob" and rows[1].actor_kind == "user"
    assert "Audit chain intact: 3 events verified (database, every seal checked)." in _verify()


@pytest.mark.django_db(transaction=True)
def test_record_event_refuses_to_run_outside_a_transaction() -> None:
    team = Team.objects.create(name="Loose", slug="loose")
    with pytest.raises(RuntimeError, match="inside the transaction"):
        record_event(actor=SYSTEM, action="team.touched", obj=team)
    assert AuditEvent.objects.count() == 0


def _tamper(sql: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A superuser can switch triggers off; that is exactly the attack.
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = origin")


@pytest.mark.django_db
def test_altered_row_is_found_by_verify_audit(submit: Any, approver: Any) -> None:
    approve_request(actor=approver, request=submit(), reason="fine")
    _tamper("UPDATE audit_auditevent SET reason = %s WHERE seq = %s", ["rubber-stamped", 2])
    with pytest.raises(CommandError, match=r"broken at sequence #2: content does not match"):
        _verify()


@pytest.mark.django_db
def test_removed_row_is_found_by_verify_audit(submit: Any, approver: Any) -> None:
    approve_request(actor=approver, request=submit(), reason="fine")
    _tamper("DELETE FROM audit_auditevent WHERE seq = %s", [2])
    with pytest.raises(CommandError, match=r"broken at sequence #2: event #2 is missing"):
        _verify()


@pytest.mark.django_db
def test_removed_newest_row_is_found_through_the_chain_head(submit: Any, approver: Any) -> None:
    approve_request(actor=approver, request=submit(), reason="fine")
    _tamper("DELETE FROM audit_auditevent WHERE seq = %s", [3])
    result = verify_chain()
    assert not result.ok and result.broken_seq == 3


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_trigger_refuses_update_and_delete(submit: Any) -> None:
    submit()
    for statement in ("UPDATE audit_auditevent SET reason = 'x'", "DELETE FROM audit_auditevent"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert AuditEvent.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_the_chain() -> None:
    teams = [Team.objects.create(name=f"T{i}", slug=f"t{i}") for i in range(8)]
    barrier = threading.Barrier(len(teams))
    errors: list[BaseException] = []

    def write(team: Team) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                with transaction.atomic():
                    record_event(actor=SYSTEM, action="team.touched", obj=team)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(t,)) for t in teams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert AuditEvent.objects.count() == 40
    assert verify_chain().ok


@pytest.mark.django_db
def test_export_verifies_offline_and_a_tampered_export_fails(
    client: Any, submit: Any, approver: Any, auditor: Any, requester: Any, tmp_path: Any
) -> None:
    approve_request(actor=approver, request=submit(), reason="fine")
    client.force_login(requester)
    assert client.get("/audit/export.jsonl").status_code == 404
    client.force_login(auditor)
    response = client.get("/audit/export.jsonl")
    body = b"".join(response.streaming_content).decode()
    export = tmp_path / "audit.jsonl"
    export.write_text(body)
    out = StringIO()
    call_command("verify_audit", "--export", str(export), "--no-anchors", stdout=out, stderr=StringIO())
    assert "3 events verified" in out.getvalue()
    lines = body.splitlines()
    # Line 0 is the export's header; event #2 is line 2.
    lines[2] = lines[2].replace('"request.approved"', '"request.rejected"')
    export.write_text("\n".join(lines) + "\n")
    with pytest.raises(CommandError, match=r"#2: content does not match"):
        call_command("verify_audit", "--export", str(export), "--no-anchors", stdout=StringIO(), stderr=StringIO())
