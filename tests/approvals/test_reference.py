"""Reference data that decides who may approve changes only through audited services."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from approvals import reference
from approvals.models import ApproverGroup
from audit.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_making_someone_an_approver_is_audited_once(team: Any, security_officer: Any) -> None:
    user = UserFactory(username="newbie")
    group = reference.ensure_approver_group(actor=security_officer, name="Payments approvers", teams=[team])
    reference.add_approver(actor=security_officer, group=group, user=user)
    reference.add_approver(actor=security_officer, group=group, user=user)
    reference.remove_approver(actor=security_officer, group=group, user=user)
    actions = list(AuditEvent.objects.filter(object_type="approvals.approvergroup").values_list("action", flat=True))
    assert actions == ["approver_group.created", "approver_group.member_added", "approver_group.member_removed"]
    added = AuditEvent.objects.get(action="approver_group.member_added")
    assert added.after == {"user": "newbie"} and added.actor_label == "sec"


def test_team_membership_and_workload_changes_are_audited(team: Any, security_officer: Any) -> None:
    user = UserFactory(username="newbie")
    reference.add_team_member(actor=security_officer, team=team, user=user)
    reference.remove_team_member(actor=security_officer, team=team, user=user)
    values = {"team": team, "name": "api", "identity_kind": "kubernetes", "environment": "dev"}
    reference.save_workload(actor=security_officer, identity="spiffe://cluster.local/ns/a/sa/api", values=values)
    reference.save_workload(
        actor=security_officer, identity="spiffe://cluster.local/ns/a/sa/api", values={**values, "environment": "prod"}
    )
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions == ["team.member_added", "team.member_removed", "workload.created", "workload.changed"]
    assert AuditEvent.objects.get(action="workload.changed").before["environment"] == "dev"


def test_admin_edits_of_approver_group_members_go_through_the_audited_service(client: Client, team: Any) -> None:
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    member = UserFactory(username="newbie")
    group = ApproverGroup.objects.create(name="G")
    group.teams.add(team)
    client.force_login(admin)
    response = client.post(
        f"/admin/approvals/approvergroup/{group.pk}/change/",
        {"name": "G", "teams": [team.pk], "members": [member.pk]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(group.members.all()) == [member]
    event = AuditEvent.objects.get(action="approver_group.member_added")
    assert event.actor_label == "root" and event.after == {"user": "newbie"}


def test_admin_cannot_edit_teams_or_workloads_directly(client: Client, team: Any) -> None:
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    assert client.get("/admin/exceptions/team/add/").status_code == 403
    assert client.get("/admin/exceptions/workload/add/").status_code == 403


def test_commands_save_windows_and_freezes_with_audit_and_clear_errors() -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    from approvals.models import ChangeWindow, Freeze

    out = StringIO()
    call_command(
        "change_window",
        "Weekly prod",
        "--env=prod",
        "--rrule=FREQ=WEEKLY;BYDAY=TU",
        "--start=2026-01-06 02:00",
        "--duration=4h",
        "--tz=Europe/Berlin",
        stdout=out,
    )
    assert ChangeWindow.objects.get().describe() == "FREQ=WEEKLY;BYDAY=TU at 02:00 Europe/Berlin for 4 h"
    call_command(
        "declare_freeze",
        "--start=2026-12-20T00:00+01:00",
        "--end=2027-01-04T00:00+01:00",
        "--env=prod",
        "--reason=Year end",
        stdout=out,
    )
    assert Freeze.objects.get().reason == "Year end"
    assert set(AuditEvent.objects.values_list("action", flat=True)) == {"change_window.saved", "freeze.declared"}
    with pytest.raises(CommandError, match="time_zone"):
        call_command(
            "change_window",
            "x",
            "--env=prod",
            "--rrule=FREQ=DAILY",
            "--start=2026-01-06 02:00",
            "--duration=1h",
            "--tz=Nowhere/Land",
        )
    with pytest.raises(CommandError, match="UTC offset"):
        call_command("declare_freeze", "--start=2026-12-20T00:00", "--end=2027-01-04T00:00", "--env=prod", "--reason=x")
