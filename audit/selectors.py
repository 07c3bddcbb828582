from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from audit.verification import RECORD_FIELDS


def timeline(refs: dict[str, Iterable[object]]) -> QuerySet[AuditEvent]:
    """Events of several objects (for example a request and its grants), oldest first."""
    query = Q(pk__in=[])
    for object_type, ids in refs.items():
        query |= Q(object_type=object_type, object_id__in=[str(i) for i in ids])
    return AuditEvent.objects.filter(query).order_by("seq")


def recent_events(
    *,
    action: str = "",
    object_type: str = "",
    actor: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Newest first, narrowed by the audit log page's filters (``until`` is exclusive)."""
    events = AuditEvent.objects.order_by("-seq")
    if action:
        events = events.filter(action=action)
    if object_type:
        events = events.filter(object_type=object_type)
    if actor:
        events = events.filter(actor_label__iexact=actor)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events


def event_choices() -> tuple[list[str], list[str]]:
    """The actions and object types the log holds, for the page's filter menus."""
    actions = AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()
    object_types = AuditEvent.objects.order_by("object_type").values_list("object_type", flat=True).distinct()
    return list(actions), list(object_types)


def head_seq() -> int:
    """The last sequence number committed (0 for an empty chain)."""
    head = AuditChainHead.objects.filter(pk=1).values_list("last_seq", flat=True).first()
    return head or 0


def checkpoint_at_or_before(seq: int) -> AuditCheckpoint | None:
    return AuditCheckpoint.objects.filter(seq__lte=seq).order_by("-seq").first()


def export_rows(
    *,
    through_seq: int,
    actor: str = "",
    action: str = "",
    object_type: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    chunk_size: int = 2000,
) -> Iterator[tuple[Any, ...]]:
    """Events up to ``through_seq`` as plain tuples in chain order.

    Tuples, not model instances, and a server-side cursor on PostgreSQL
    (``iterator``): a million events stream in constant memory.
    """
    events = AuditEvent.objects.filter(seq__lte=through_seq)
    if actor:
        events = events.filter(actor_label__iexact=actor)
    if action:
        events = events.filter(action=action)
    if object_type:
        events = events.filter(object_type=object_type)
    if since:
        events = events.filter(created_at__gte=since)
    if until:
        events = events.filter(created_at__lt=until)
    return events.order_by("seq").values_list(*RECORD_FIELDS).iterator(chunk_size=chunk_size)
