"""On PostgreSQL: TRUNCATE is refused by the trigger, and the role split in deploy/ is enforced by privilege."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from audit.services import SYSTEM, record_event
from audit.verification import verify_chain
from exceptions.models import Team

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres-roles.sql"
PASSWORD = "role-split-test"  # a throwaway role in the test database


def _connect(**overrides: Any) -> psycopg.Connection[Any]:
    """A fresh connection of our own, without the suite's maintenance switch."""
    db = connection.settings_dict
    params = {"host": db["HOST"], "port": db["PORT"] or 5432, "dbname": db["NAME"], "user": db["USER"]}
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    params.update(overrides)
    return psycopg.connect(**params)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_truncate_of_audit_events_is_refused_without_the_maintenance_switch() -> None:
    with transaction.atomic():
        record_event(actor=SYSTEM, action="team.touched", obj=Team.objects.create(name="T", slug="t"))
    with _connect() as owner, owner.cursor() as cursor:
        # The suite's switch is set per connection; this one, like any production session, lacks it.
        cursor.execute("SELECT current_setting('egress.audit_maintenance', true)")
        assert cursor.fetchone()[0] in (None, "")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: TRUNCATE refused"):
            cursor.execute("TRUNCATE audit_auditevent")
        owner.rollback()
    assert AuditEvent.objects.count() == 1 and verify_chain().ok


@pytest.fixture
def role_split() -> Iterator[tuple[str, str]]:
    """deploy/postgres-roles.sql applied in the test database with role names of this run (roles are cluster-wide)."""
    suffix = f"{os.getpid()}"
    owner, app = f"egress_owner_t{suffix}", f"egress_app_t{suffix}"
    sql = ROLES_SQL.read_text().replace("egress_owner", owner).replace("egress_app", app)
    with _connect(autocommit=True) as admin:
        admin.execute(sql)
        admin.execute(f"ALTER ROLE \"{app}\" PASSWORD '{PASSWORD}'")
    try:
        yield owner, app
    finally:
        connection.close()
        with _connect(autocommit=True) as admin:
            for role in (app, owner):
                admin.execute(f'DROP OWNED BY "{role}"')
                admin.execute(f'DROP ROLE "{role}"')


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_runtime_role_may_append_and_read_audit_events_but_never_rewrite_them(
    role_split: tuple[str, str],
) -> None:
    _, app = role_split
    # The portal's own writer, through Django, as the runtime role.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f'SET LOCAL ROLE "{app}"')
        team = Team.objects.create(name="T", slug="t")
        record_event(actor=SYSTEM, action="team.touched", obj=team)
        record_event(actor=SYSTEM, action="team.touched", obj=team)
    assert verify_chain().ok and AuditEvent.objects.count() == 2

    with _connect(user=app, password=PASSWORD) as runtime, runtime.cursor() as cursor:
        cursor.execute("SELECT current_user, count(*) FROM audit_auditevent")
        assert cursor.fetchone() == (app, 2)
        cursor.execute(
            "INSERT INTO audit_auditevent (seq, created_at, actor_kind, actor_label, action, object_type, object_id, "
            "reason, request_id, context, prev_hash, hash, seal, seal_key_id) "
            "SELECT 3, now(), 'system', 'x', 'x', 'x', 'x', '', '', '{}', hash, repeat('a', 64), '', '' "
            "FROM audit_auditevent WHERE seq = 2"
        )
        runtime.rollback()
        for statement in (
            "UPDATE audit_auditevent SET reason = 'rubber-stamped'",
            "DELETE FROM audit_auditevent",
            "TRUNCATE audit_auditevent",
            "UPDATE audit_auditcheckpoint SET head_hash = ''",
            "UPDATE audit_auditchainhead SET id = 2",
            "DELETE FROM audit_auditchainhead",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table"):
                cursor.execute(statement)
            runtime.rollback()
        # The rest of the portal's tables stay writable.
        cursor.execute("UPDATE exceptions_team SET name = 'Renamed'")
        assert cursor.rowcount == 1
        runtime.rollback()
    assert AuditEvent.objects.count() == 2 and verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_trigger_lets_an_update_through_only_when_it_fills_an_empty_seal() -> None:
    with transaction.atomic():
        record_event(actor=SYSTEM, action="team.touched", obj=Team.objects.create(name="T", slug="t"))
    event = AuditEvent.objects.get()
    for statement in (
        "UPDATE audit_auditevent SET seal = repeat('b', 64)",  # replacing a seal
        "UPDATE audit_auditevent SET seal = ''",  # removing one
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute("UPDATE audit_auditevent SET seal = ''")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET seal = %s, reason = 'filled and edited'", [event.seal])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET seal = %s", [event.seal])
    assert verify_chain().ok
