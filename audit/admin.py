"""Admin for the audit log, and the audited admin every role-, token-, authenticator- or
schedule-holding model is edited through.

``AuditedAdmin`` writes exactly one audit event, with the acting user, for each add,
change or delete made in the admin, in the admin's own transaction (the change and
delete views run in one; a bulk delete gets one here). Actions other than the bulk
delete must be marked ``@audited_action`` and call an audited service.
``tests/audit/test_admin_chokepoint.py`` walks ``admin.site._registry`` and fails on any
such model that is editable another way.

Django's, allauth's and django-celery-beat's own admins are replaced here: the user
(groups, superuser and staff flags, permissions) and their e-mail addresses, the group (its name and permissions),
MFA authenticators (read-only; removing one is audited), social logins and their
tokens (read-only) and beat's schedules (audited).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from allauth.account.admin import EmailAddressAdmin
from allauth.account.models import EmailAddress
from allauth.mfa.admin import AuthenticatorAdmin
from allauth.mfa.models import Authenticator
from allauth.socialaccount.admin import SocialAccountAdmin, SocialAppAdmin, SocialTokenAdmin
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db import models, transaction
from django.db.models import ForeignObjectRel, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django_celery_beat.admin import (
    ClockedScheduleAdmin,
    CrontabScheduleAdmin,
    IntervalScheduleAdmin,
    PeriodicTaskAdmin,
    SolarScheduleAdmin,
)
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from audit.models import AuditCheckpoint, AuditEvent
from audit.services import record_event
from foundation.actors import actor_for
from foundation.admin import ReadOnlyAdmin

F = TypeVar("F", bound=Callable[..., Any])

# Never copied into an event: the hash, a key or a secret would then live in the log for good.
SECRET_FIELDS = frozenset({"password", "secret", "secret_key", "key", "token", "token_secret", "data", "client_id"})


def audited_action(func: F) -> F:
    """Marks an admin action that changes state only through an audited service."""
    func.audited = True  # type: ignore[attr-defined]
    return func


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


class AuditedAdmin(admin.ModelAdmin[Any]):
    """One audit event per add, change or delete, with the acting user, in the same transaction."""

    # Fields the event holds; empty means every concrete and many-to-many field but the secret ones.
    audit_fields: tuple[str, ...] = ()

    def audit_name(self) -> str:
        return self.model._meta.model_name or "object"

    def audit_snapshot(self, obj: models.Model) -> dict[str, Any]:
        opts = obj._meta
        names = self.audit_fields or tuple(
            f.name for f in [*opts.concrete_fields, *opts.many_to_many] if f.name not in SECRET_FIELDS
        )
        snapshot: dict[str, Any] = {}
        for name in names:
            field = opts.get_field(name)
            if field.many_to_many or field.one_to_many:
                accessor = (field.get_accessor_name() if isinstance(field, ForeignObjectRel) else None) or name
                snapshot[name] = sorted(str(related) for related in getattr(obj, accessor).all()) if obj.pk else []
            else:
                snapshot[name] = _plain(getattr(obj, getattr(field, "attname", name)))
        return snapshot

    def _before(self, obj: models.Model) -> dict[str, Any] | None:
        if obj.pk is None:
            return None
        stored = type(obj)._default_manager.filter(pk=obj.pk).first()
        return self.audit_snapshot(stored) if stored is not None else None

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool) -> None:
        # Read before the row is written; the event waits for the many-to-many fields (save_related).
        form._audit_before = self._before(obj) if change else None  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: ModelForm[Any], formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        before = getattr(form, "_audit_before", None)
        after = self.audit_snapshot(form.instance)
        if change and before == after:
            return
        with transaction.atomic():
            record_event(
                actor=actor_for(request),
                action=f"{self.audit_name()}.{'changed' if change else 'created'}",
                obj=form.instance,
                before=before,
                after=after if before is None else {k: v for k, v in after.items() if before.get(k) != v},
                reason="in the admin",
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            record_event(
                actor=actor_for(request),
                action=f"{self.audit_name()}.deleted",
                obj=obj,
                before=self.audit_snapshot(obj),
                reason="in the admin",
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset.select_for_update():
                self.delete_model(request, obj)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "actor_label", "action", "object_type", "object_id"]
    list_filter = ["action", "actor_kind"]


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    """Checkpoints are written by ``write_checkpoint`` only."""

    list_display = ["seq", "created_at", "head_hash", "commit", "path"]


def _replace(model: type[models.Model], admin_class: type[admin.ModelAdmin[Any]]) -> None:
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, admin_class)


User = get_user_model()


class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    """Groups (security officers, auditors), superuser, staff and active flags and permissions:
    each save is one ``user.changed`` event naming what changed. A user is deactivated, not
    deleted, so their past decisions keep their name."""

    audit_fields = (
        "username",
        "email",
        "first_name",
        "last_name",
        "is_active",
        "is_staff",
        "is_superuser",
        "groups",
        "user_permissions",
    )

    def audit_name(self) -> str:
        return "user"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        # Setting someone's password is taking over their account: the event says who did it.
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            user = self.get_object(request, id)
            if request.method == "POST" and response.status_code == 302 and user is not None:
                record_event(
                    actor=actor_for(request),
                    action="user.password_set",
                    obj=user,
                    after={"username": user.get_username()},
                    reason="in the admin",
                )
        return response


class AuditedGroupAdmin(AuditedAdmin, GroupAdmin):
    """A group's name decides the role (``security-officers``, ``auditors``): renaming or
    deleting it, or changing its permissions, is one ``group.*`` event; the delete names
    the members who lose the role."""

    audit_fields = ("name", "permissions", "user")

    def audit_snapshot(self, obj: models.Model) -> dict[str, Any]:
        snapshot = super().audit_snapshot(obj)
        snapshot["members"] = snapshot.pop("user")
        return snapshot


class AuditedAuthenticatorAdmin(AuditedAdmin, AuthenticatorAdmin):
    """Authenticators are enrolled by their owner; here they can only be removed (the owner
    enrols again), one ``authenticator.deleted`` event each. Their secret is never copied."""

    audit_fields = ("user", "type", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditedEmailAddressAdmin(AuditedAdmin, EmailAddressAdmin):
    """A password reset goes to a verified address: adding or verifying one is taking over the
    account. Edits are audited; allauth's bulk "make verified", which bypasses the save, is gone."""

    actions = ()


class ReadOnlySocialAppAdmin(ReadOnlyAdmin, SocialAppAdmin):
    """Sign-in providers come from settings (OIDC_*), reviewed like code."""


class ReadOnlySocialAccountAdmin(ReadOnlyAdmin, SocialAccountAdmin):
    """Which outside identity signs in as which user: written by allauth's sign-in only."""

    actions = ()


class ReadOnlySocialTokenAdmin(ReadOnlyAdmin, SocialTokenAdmin):
    pass


class AuditedPeriodicTaskAdmin(AuditedAdmin, PeriodicTaskAdmin):
    """Beat's schedule (expiry sweeps, publishing, checkpoints): edits are audited; beat's
    bulk enable/disable/run actions, which bypass the save, are not offered."""

    actions = ()


class AuditedClockedScheduleAdmin(AuditedAdmin, ClockedScheduleAdmin):
    pass


class AuditedCrontabScheduleAdmin(AuditedAdmin, CrontabScheduleAdmin):
    pass


class AuditedSolarScheduleAdmin(AuditedAdmin, SolarScheduleAdmin):
    pass


class AuditedIntervalScheduleAdmin(AuditedAdmin, IntervalScheduleAdmin):
    pass


_replace(User, AuditedUserAdmin)
_replace(Group, AuditedGroupAdmin)
_replace(Authenticator, AuditedAuthenticatorAdmin)
_replace(EmailAddress, AuditedEmailAddressAdmin)
_replace(SocialApp, ReadOnlySocialAppAdmin)
_replace(SocialAccount, ReadOnlySocialAccountAdmin)
_replace(SocialToken, ReadOnlySocialTokenAdmin)
_replace(PeriodicTask, AuditedPeriodicTaskAdmin)
_replace(ClockedSchedule, AuditedClockedScheduleAdmin)
_replace(CrontabSchedule, AuditedCrontabScheduleAdmin)
_replace(SolarSchedule, AuditedSolarScheduleAdmin)
_replace(IntervalSchedule, AuditedIntervalScheduleAdmin)
