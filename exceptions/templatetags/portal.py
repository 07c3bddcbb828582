from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template
from django.forms import BoundField
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString

from exceptions.models import Workload
from exceptions.risk import format_duration

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """7 days, 36 hours: lifetimes as people say them."""
    return format_duration(value) if value is not None else ""


@register.filter
def iso_time(value: str | None) -> str:
    """An ISO 8601 / RFC 3339 time as people read it, in the portal's zone with the zone named."""
    if not value:
        return ""
    parsed = parse_datetime(value.replace("Z", "+00:00"))
    if parsed is None:
        return value
    return date_format(timezone.localtime(parsed), "Y-m-d H:i T")


@register.simple_tag
def described_widget(field: BoundField) -> SafeString:
    """The field's widget, described by exactly the help text and errors rendered beside it
    (exceptions/_field.html renders them with these ids)."""
    ids = []
    if field.help_text:
        ids.append(f"{field.auto_id}_helptext")
    if field.errors:
        ids.append(f"{field.auto_id}_errors")
    attrs: dict[str, Any] = {}
    if ids:
        attrs["aria-describedby"] = " ".join(ids)
    if field.errors:
        attrs["aria-invalid"] = "true"
    return field.as_widget(attrs=attrs)


@register.filter
def files_for(roles: Any, workload_id: int | None) -> bool:
    """``{% if roles|files_for:workload_id %}``: may this user file a request for that workload?
    (Its team is one of theirs, as ``requestable_workloads`` says.) Guards "Request access" links."""
    if roles is None or workload_id is None or not roles.can_file_requests:
        return False
    return Workload.objects.filter(pk=workload_id, team_id__in=roles.member_team_ids).exists()
