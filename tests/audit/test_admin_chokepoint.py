"""Admin changes to roles, tokens, authenticators and schedules are audited with the acting user
(issue 17 §5): a walk over every registered ModelAdmin, and the admins themselves driven over HTTP."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth.models import Group, Permission
from django.db import models
from django.test import Client, RequestFactory
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from approvals.models import ApproverGroup
from audit.admin import AuditedAdmin
from audit.models import AuditEvent
from exceptions.access import SECURITY_GROUP
from exceptions.models import Team
from exceptions.tokens import create_token
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# What a model holds that decides who may do what, or when: roles, tokens, authenticators, schedules.
SENSITIVE_NAME = re.compile(
    r"token|secret|key|authenticator|credential|password|group|membership|role|approver|permission"
    r"|schedule|window|freeze|periodic|crontab|clocked|interval|solar|social"
)
# The user and the address a password reset goes to are credentials; a link to a group or a
# permission is a role. (A plain link to a user is not: a stale notice's "kept by".)
SENSITIVE_MODELS = {"auth.group", "auth.permission", "auth.user", "mfa.authenticator", "account.emailaddress"}
ROLE_TARGETS = {"auth.group", "auth.permission", "mfa.authenticator"}

# Admins that are editable but write through audited services of their own, with the test proving it.
AUDITED_BY_SERVICES = {
    "approvals.ApproverGroup": "tests.approvals.test_reference::"
    "test_admin_edits_of_approver_group_members_go_through_the_audited_service",
}


def is_sensitive(model: type[models.Model]) -> bool:
    opts = model._meta
    if opts.label_lower in SENSITIVE_MODELS or SENSITIVE_NAME.search(opts.model_name or ""):
        return True
    for field in opts.get_fields(include_hidden=True):
        related = getattr(field, "related_model", None)
        holds_role = related is not None and not isinstance(related, str) and related._meta.label_lower in ROLE_TARGETS
        if holds_role and (field.concrete or field.many_to_many):
            return True
        if field.concrete and SENSITIVE_NAME.search(field.name):
            return True
    return False


def _superuser_request() -> Any:
    request = RequestFactory().get("/admin/")
    request.user = UserFactory.create(username="root-walker", is_staff=True, is_superuser=True)
    return request


def _editable_fields(model_admin: admin.ModelAdmin[Any], request: Any) -> set[str]:
    fields = set(flatten_fieldsets(model_admin.get_fieldsets(request)))
    return fields - set(model_admin.get_readonly_fields(request))


def test_the_walk_finds_the_models_that_hold_roles_tokens_authenticators_and_schedules() -> None:
    found = {model._meta.label for model in admin.site._registry if is_sensitive(model)}
    assert found >= {
        "auth.User",
        "auth.Group",
        "mfa.Authenticator",
        "socialaccount.SocialToken",
        "socialaccount.SocialApp",
        "socialaccount.SocialAccount",
        "exceptions.IntegrationToken",
        "exceptions.TeamMembership",
        "approvals.ApproverGroup",
        "approvals.ChangeWindow",
        "approvals.Freeze",
        "django_celery_beat.PeriodicTask",
        "django_celery_beat.CrontabSchedule",
        "traffic.EgressGateway",
        "account.EmailAddress",
    }


def test_no_admin_edits_a_sensitive_model_without_an_audit_event() -> None:
    """The chokepoint: a new admin for such a model is read-only, an AuditedAdmin, or names
    the test proving its services audit it; its actions are marked @audited_action."""
    request = _superuser_request()
    problems = []
    for model, model_admin in admin.site._registry.items():
        if not is_sensitive(model):
            continue
        label = model._meta.label
        editable = (
            model_admin.has_add_permission(request)
            or model_admin.has_delete_permission(request)
            or (model_admin.has_change_permission(request) and bool(_editable_fields(model_admin, request)))
        )
        if editable and not isinstance(model_admin, AuditedAdmin) and label not in AUDITED_BY_SERVICES:
            problems.append(f"{label}: editable in the admin ({type(model_admin).__name__}) without an audit event")
        for name, (func, _, _) in model_admin.get_actions(request).items():
            bulk_delete = name == "delete_selected" and isinstance(model_admin, AuditedAdmin)
            if not bulk_delete and not getattr(func, "audited", False):
                problems.append(f"{label}: action {name!r} is not an @audited_action")
    assert not problems, "\n".join(problems)
    for label, test in AUDITED_BY_SERVICES.items():
        module, _, name = test.partition("::")
        assert callable(getattr(importlib.import_module(module), name, None)), (label, test)


@pytest.fixture
def root(client: Client) -> Any:
    user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


def _user_form(user: Any, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "groups": [g.pk for g in user.groups.all()],
        "user_permissions": [p.pk for p in user.user_permissions.all()],
    }
    flags = {"is_active": user.is_active, "is_staff": user.is_staff, "is_superuser": user.is_superuser}
    flags.update({k: v for k, v in changes.items() if k in flags})
    data.update({k: "on" for k, v in flags.items() if v})
    data.update({k: v for k, v in changes.items() if k not in flags})
    return data


def _events(action_prefix: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith=action_prefix).order_by("seq"))


def test_adding_someone_to_the_security_officers_in_the_user_admin_is_one_event_by_the_acting_user(
    client: Client, root: Any
) -> None:
    officers = Group.objects.get_or_create(name=SECURITY_GROUP)[0]
    alice = UserFactory(username="alice")
    response = client.post(f"/admin/auth/user/{alice.pk}/change/", _user_form(alice, groups=[officers.pk]))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(alice.groups.all()) == [officers]
    [event] = _events("user.")
    assert (event.action, event.actor_label, event.object_id) == ("user.changed", "root", str(alice.pk))
    assert event.before["groups"] == [] and event.after == {"groups": [SECURITY_GROUP]}
    assert event.reason == "in the admin"
    # Saving again without a change writes nothing.
    alice.refresh_from_db()
    assert client.post(f"/admin/auth/user/{alice.pk}/change/", _user_form(alice)).status_code == 302
    assert len(_events("user.")) == 1


def test_superuser_and_staff_flags_set_in_the_admin_are_one_event_naming_both(client: Client, root: Any) -> None:
    bob = UserFactory(username="bob")
    response = client.post(f"/admin/auth/user/{bob.pk}/change/", _user_form(bob, is_staff=True, is_superuser=True))
    assert response.status_code == 302
    [event] = _events("user.")
    assert event.after == {"is_staff": True, "is_superuser": True}
    assert event.before["is_staff"] is False and event.before["is_superuser"] is False
    assert event.before is not None and "password" not in event.before
    permission = Permission.objects.get(codename="view_grant")
    client.post(
        f"/admin/auth/user/{bob.pk}/change/",
        _user_form(bob, is_staff=True, is_superuser=False, user_permissions=[permission.pk]),
    )
    assert [e.after for e in _events("user.")][1] == {"is_superuser": False, "user_permissions": [str(permission)]}


def test_users_are_created_with_an_event_never_deleted_and_a_password_set_is_audited(client: Client, root: Any) -> None:
    created = client.post(
        "/admin/auth/user/add/",
        {
            "username": "carol",
            "password1": "a-long-Passphrase-42",
            "password2": "a-long-Passphrase-42",
            "usable_password": "true",
        },
    )
    assert created.status_code == 302, created.content.decode()[:3000]
    [event] = _events("user.")
    assert event.action == "user.created" and event.after["username"] == "carol"
    user = UserFactory._meta.model.objects.get(username="carol")
    assert client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"}).status_code == 403
    changed = client.post(
        f"/admin/auth/user/{user.pk}/password/",
        {"password1": "another-Passphrase-43", "password2": "another-Passphrase-43", "usable_password": "true"},
    )
    assert changed.status_code == 302, changed.content.decode()[:3000]
    assert [e.action for e in _events("user.")] == ["user.created", "user.password_set"]
    assert "another" not in str(_events("user.")[1].after)


def test_renaming_or_deleting_a_role_group_in_the_group_admin_is_one_event_each(client: Client, root: Any) -> None:
    officers = Group.objects.create(name=SECURITY_GROUP)
    officers.user_set.add(UserFactory(username="dave"))
    renamed = client.post(f"/admin/auth/group/{officers.pk}/change/", {"name": "former-officers"})
    assert renamed.status_code == 302
    deleted = client.post(f"/admin/auth/group/{officers.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    events = _events("group.")
    assert [(e.action, e.actor_label) for e in events] == [("group.changed", "root"), ("group.deleted", "root")]
    assert events[0].before["name"] == SECURITY_GROUP and events[0].after == {"name": "former-officers"}
    assert events[1].before["members"] == ["dave"]


def test_a_bulk_delete_in_the_group_admin_writes_one_event_per_group(client: Client, root: Any) -> None:
    groups = [Group.objects.create(name=name) for name in ("auditors", SECURITY_GROUP)]
    response = client.post(
        "/admin/auth/group/",
        {"action": "delete_selected", "_selected_action": [g.pk for g in groups], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Group.objects.exists()
    assert sorted(e.before["name"] for e in _events("group.deleted")) == ["auditors", SECURITY_GROUP]


def test_authenticators_are_read_only_and_their_removal_is_audited_without_the_secret(
    client: Client, root: Any
) -> None:
    owner = UserFactory(username="erin")
    authenticator = Authenticator.objects.create(user=owner, type=Authenticator.Type.TOTP, data={"secret": "S3CR3T"})
    assert client.get("/admin/mfa/authenticator/add/").status_code == 403
    assert (
        client.post(f"/admin/mfa/authenticator/{authenticator.pk}/change/", {"type": "recovery_codes"}).status_code
        == 403
    )
    assert client.post(f"/admin/mfa/authenticator/{authenticator.pk}/delete/", {"post": "yes"}).status_code == 302
    [event] = _events("authenticator.")
    assert event.action == "authenticator.deleted" and event.actor_label == "root"
    assert event.before["type"] == "totp" and "S3CR3T" not in str(event.before)


def test_social_logins_and_their_tokens_are_read_only(client: Client, root: Any) -> None:
    for path in ("socialaccount/socialapp", "socialaccount/socialaccount", "socialaccount/socialtoken"):
        assert client.get(f"/admin/{path}/add/").status_code == 403, path


def test_a_beat_schedule_edit_is_one_event_and_its_bypassing_actions_are_gone(client: Client, root: Any) -> None:
    every = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    task = PeriodicTask.objects.create(name="expire", task="exceptions.tasks.expire_due", interval=every)
    page = client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update({"name": "expire", "regtask": "", "task": "exceptions.tasks.expire_due", "interval": every.pk})
    data.update({"args": "[]", "kwargs": "{}", "priority": "", "expire_seconds": "", "queue": "", "exchange": ""})
    data.update({"routing_key": "", "headers": "{}", "description": ""})
    data.pop("enabled", None)  # unticked: the expiry sweep stops
    for key in ("start_time", "expires", "last_run_at"):
        data.pop(key, None)
    response = client.post(f"/admin/django_celery_beat/periodictask/{task.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    task.refresh_from_db()
    assert task.enabled is False
    [event] = _events("periodictask.")
    assert event.action == "periodictask.changed" and event.after["enabled"] is False and event.actor_label == "root"
    listing = client.get("/admin/django_celery_beat/periodictask/")
    assert b"disable_tasks" not in listing.content and b"run_tasks" not in listing.content


def test_revoking_tokens_in_the_admin_is_one_event_per_token(client: Client, root: Any) -> None:
    tokens = [create_token(actor=root, user=root, name=name, scopes=["requests:read"])[0] for name in ("a", "b")]
    response = client.post(
        "/admin/exceptions/integrationtoken/",
        {"action": "revoke", "_selected_action": [t.pk for t in tokens]},
    )
    assert response.status_code == 302
    assert [(e.action, e.actor_label) for e in _events("token.revoked")] == [("token.revoked", "root")] * 2
    assert client.get("/admin/exceptions/integrationtoken/add/").status_code == 403


def test_an_approver_group_keeps_its_name_and_loses_a_team_with_one_event(client: Client, root: Any, team: Any) -> None:
    other = Team.objects.create(name="Other", slug="other")
    group = ApproverGroup.objects.create(name="G")
    group.teams.add(team, other)
    response = client.post(
        f"/admin/approvals/approvergroup/{group.pk}/change/", {"name": "H", "teams": [team.pk], "members": []}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(ApproverGroup.objects.values_list("name", flat=True)) == ["G"]
    assert list(group.teams.all()) == [team]
    [event] = _events("approver_group.")
    assert event.action == "approver_group.teams_changed" and event.after == {"name": "G", "teams": [team.slug]}
