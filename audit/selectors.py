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


def recent_events(*, action: str = "", object_type: str = "") -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.order_by("-seq")
    if action:
        events = events.filter(action=action)
    if object_type:
        events = events.filter(object_type=object_type)
    return events


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
