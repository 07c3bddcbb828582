"""Reference data that decides who may approve: every change is audited.

Teams, memberships, workloads, approver groups and their members, change
windows and freezes change only through these services (the admin calls
them, or is read-only), so making someone an approver always leaves a trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from approvals.models import ApproverGroup, ChangeWindow, Freeze
from approvals.windows import parse_rrule, zone
from audit.services import record_event
from exceptions.choices import Environment
from exceptions.models import Team, TeamMembership, Workload


def _check_environments(environments: Sequence[str]) -> list[str]:
    unknown = sorted(set(environments) - set(Environment.values))
    if not environments or unknown:
        raise ValidationError(
            {"environments": [f"Name at least one of {', '.join(Environment.values)}; unknown: {', '.join(unknown)}."]}
        )
    return sorted(set(environments))


def ensure_team(*, actor: Any, slug: str, name: str) -> Team:
    with transaction.atomic():
        team, created = Team.objects.get_or_create(slug=slug, defaults={"name": name})
        if created:
            record_event(actor=actor, action="team.created", obj=team, after={"slug": slug, "name": name})
    return team


def add_team_member(*, actor: Any, team: Team, user: Any) -> TeamMembership:
    with transaction.atomic():
        membership, created = TeamMembership.objects.get_or_create(team=team, user=user)
        if created:
            record_event(
                actor=actor,
                action="team.member_added",
                obj=team,
                after={"user": user.get_username(), "team": team.slug},
            )
    return membership


def remove_team_member(*, actor: Any, team: Team, user: Any) -> bool:
    with transaction.atomic():
        deleted, _ = TeamMembership.objects.filter(team=team, user=user).delete()
        if deleted:
            record_event(
                actor=actor,
                action="team.member_removed",
                obj=team,
                before={"user": user.get_username(), "team": team.slug},
            )
    return bool(deleted)


def save_workload(*, actor: Any, identity: str, values: dict[str, Any]) -> Workload:
    """Create or update the workload with ``identity``; the event holds what changed."""
    with transaction.atomic():
        workload = Workload.objects.select_for_update().filter(identity=identity).first()
        before = None
        if workload is None:
            workload = Workload(identity=identity, **values)
        else:
            before = {k: getattr(workload, k) for k in values}
            for key, value in values.items():
                setattr(workload, key, value)
        after = {k: getattr(workload, k) for k in values}
        if before == after:
            return workload
        workload.full_clean()
        workload.save()
        record_event(
            actor=actor,
            action="workload.created" if before is None else "workload.changed",
            obj=workload,
            before={k: str(v) for k, v in before.items()} if before else None,
            after={k: str(v) for k, v in after.items()},
        )
    return workload


def ensure_approver_group(*, actor: Any, name: str, teams: Sequence[Team]) -> ApproverGroup:
    with transaction.atomic():
        group, created = ApproverGroup.objects.get_or_create(name=name)
        before = sorted(group.teams.values_list("slug", flat=True))
        group.teams.add(*teams)
        after = sorted(group.teams.values_list("slug", flat=True))
        if created or before != after:
            record_event(
                actor=actor,
                action="approver_group.created" if created else "approver_group.teams_changed",
                obj=group,
                before=None if created else {"teams": before},
                after={"name": name, "teams": after},
            )
    return group


def set_approver_group_teams(*, actor: Any, group: ApproverGroup, teams: Sequence[Team]) -> None:
    """The teams whose requests ``group`` approves, exactly these: one event when they change."""
    with transaction.atomic():
        locked = ApproverGroup.objects.select_for_update().get(pk=group.pk)
        before = sorted(locked.teams.values_list("slug", flat=True))
        locked.teams.set(teams)
        after = sorted(locked.teams.values_list("slug", flat=True))
        if before != after:
            record_event(
                actor=actor,
                action="approver_group.teams_changed",
                obj=locked,
                before={"teams": before},
                after={"name": locked.name, "teams": after},
            )


def add_approver(*, actor: Any, group: ApproverGroup, user: Any) -> None:
    with transaction.atomic():
        if group.members.filter(pk=user.pk).exists():
            return
        group.members.add(user)
        record_event(actor=actor, action="approver_group.member_added", obj=group, after={"user": user.get_username()})


def remove_approver(*, actor: Any, group: ApproverGroup, user: Any) -> None:
    with transaction.atomic():
        if not group.members.filter(pk=user.pk).exists():
            return
        group.members.remove(user)
        record_event(
            actor=actor, action="approver_group.member_removed", obj=group, before={"user": user.get_username()}
        )


def save_change_window(
    *,
    actor: Any,
    name: str,
    environments: Sequence[str],
    rrule: str,
    first_start_local: datetime,
    duration: timedelta,
    time_zone: str,
) -> ChangeWindow:
    """Create or replace the window ``name``. ``first_start_local`` is naive wall-clock time in ``time_zone``."""
    tz = zone(time_zone)
    if first_start_local.tzinfo is not None:
        raise ValidationError({"first_start": ["Give the first start as a wall-clock time, without a UTC offset."]})
    dtstart = first_start_local.replace(tzinfo=tz)
    parse_rrule(rrule, dtstart=dtstart)
    if duration <= timedelta(0) or duration > timedelta(days=7):
        raise ValidationError({"duration": ["A window lasts more than nothing and at most 7 days."]})
    values = {
        "environments": _check_environments(environments),
        "rrule": rrule.strip().removeprefix("RRULE:"),
        "first_start": dtstart,
        "duration": duration,
        "time_zone": time_zone,
    }
    with transaction.atomic():
        window, created = ChangeWindow.objects.select_for_update().get_or_create(name=name, defaults=values)
        before = None if created else window.describe()
        if not created:
            for key, value in values.items():
                setattr(window, key, value)
            window.save()
        if created or before != window.describe():
            record_event(
                actor=actor,
                action="change_window.saved",
                obj=window,
                before={"window": before} if before else None,
                after={"window": window.describe(), "environments": window.environments},
            )
    return window


def declare_freeze(
    *, actor: Any, starts_at: datetime, ends_at: datetime, environments: Sequence[str], reason: str
) -> Freeze:
    reason = (reason or "").strip()
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": ["A freeze ends after it starts."]})
    if not reason:
        raise ValidationError({"reason": ["Say why changes are frozen; requesters read it."]})
    with transaction.atomic():
        freeze = Freeze.objects.create(
            starts_at=starts_at, ends_at=ends_at, environments=_check_environments(environments), reason=reason
        )
        record_event(
            actor=actor,
            action="freeze.declared",
            obj=freeze,
            after={"starts_at": starts_at, "ends_at": ends_at, "environments": freeze.environments},
            reason=reason,
        )
    return freeze
