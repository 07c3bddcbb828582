from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet

from audit.models import AuditEvent


def timeline(refs: dict[str, Iterable[object]]) -> QuerySet[AuditEvent]:
    """Events of several objects (for example a request and its grants), oldest first."""
    query = Q(pk__in=[])
    for object_type, ids in refs.items():
        query |= Q(object_type=object_type, object_id__in=[str(i) for i in ids])
    return AuditEvent.objects.filter(query).order_by("seq")


def recent_events(*, action: str = "", object_type: str = "") -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.order_by("-seq")
    if action:
        events = events.filter(action=action)
    if object_type:
        events = events.filter(object_type=object_type)
    return events
