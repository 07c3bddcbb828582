"""Writing outbox rows. Callers are services inside their own transaction; the relay delivers later.

Nothing is sent from here and nothing is sent from ``on_commit``: if the change
rolls back, so does its side effect; if it commits, the relay delivers it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.template.exceptions import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.module_loading import import_string

from foundation.outbox.models import OutboxMessage

MAIL = "mail"
logger = logging.getLogger(__name__)


def enqueue_many(
    *, kind: str, items: Sequence[tuple[str, Mapping[str, Any]]], available_at: datetime | None = None
) -> None:
    """Add many side effects of one kind, ``(idempotency key, payload)`` each, in one insert; keys
    already queued are not added again."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("enqueue() runs inside the transaction of the change that causes the side effect.")
    due = available_at or timezone.now()
    OutboxMessage.objects.bulk_create(
        [
            OutboxMessage(kind=kind, payload=dict(payload), idempotency_key=key, available_at=due)
            for key, payload in items
        ],
        ignore_conflicts=True,
    )


def enqueue(
    *, kind: str, payload: Mapping[str, Any], idempotency_key: str, available_at: datetime | None = None
) -> OutboxMessage:
    """Add a side effect to the caller's transaction; a second row with the same key is not added."""
    enqueue_many(kind=kind, items=[(idempotency_key, payload)], available_at=available_at)
    return OutboxMessage.objects.get(idempotency_key=idempotency_key)


def enqueue_mail(
    *,
    to: Sequence[str],
    subject: str,
    template: str,
    context: Mapping[str, Any],
    idempotency_key: str,
    kind: str = MAIL,
) -> OutboxMessage | None:
    """Render ``<template>.txt`` (and ``<template>.html`` when it exists) now and queue the mail.

    Rendering at enqueue time keeps the relay free of database reads and makes the
    mail say what was true when the change committed. No recipients, no row.
    """
    recipients = sorted({address for address in to if address})
    if not recipients:
        return None
    payload: dict[str, Any] = {
        "to": recipients,
        "subject": subject,
        "text": render_to_string(f"{template}.txt", dict(context)),
    }
    with contextlib.suppress(TemplateDoesNotExist):
        payload["html"] = render_to_string(f"{template}.html", dict(context))
    return enqueue(kind=kind, payload=payload, idempotency_key=idempotency_key)


def enqueue_coalesced(*, kind: str, payload: Mapping[str, Any], idempotency_key: str, delay_seconds: float) -> None:
    """Arm the one row under ``idempotency_key``: a burst of changes makes one delivery.

    A pending row keeps its earlier due time (so a steady stream cannot postpone
    it forever); a delivered or parked row is re-armed as a fresh request. The
    revision bump tells a delivery already under way that it did not cover this
    change, so the row stays pending and is delivered once more.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("enqueue_coalesced() runs inside the transaction of the change that causes it.")
    now = timezone.now()
    due = now + timedelta(seconds=delay_seconds)
    table = OutboxMessage._meta.db_table
    connection = transaction.get_connection()
    ops = connection.ops
    with connection.cursor() as cursor:
        # One statement on both backends: insert, or re-arm the existing row under its lock.
        cursor.execute(
            f'INSERT INTO "{table}" '  # noqa: S608 - table name from the model, values are parameters
            '("kind", "payload", "idempotency_key", "status", "attempts", "revision", "available_at", '
            '"last_error", "created_at") '
            "VALUES (%s, %s, %s, 'pending', 0, 0, %s, '', %s) "
            'ON CONFLICT ("idempotency_key") DO UPDATE SET '
            '"payload" = EXCLUDED."payload", '
            f'"revision" = "{table}"."revision" + 1, '
            f'"available_at" = CASE WHEN "{table}"."status" = \'pending\' '
            f'AND "{table}"."available_at" < EXCLUDED."available_at" '
            f'THEN "{table}"."available_at" ELSE EXCLUDED."available_at" END, '
            f'"attempts" = CASE WHEN "{table}"."status" = \'pending\' THEN "{table}"."attempts" ELSE 0 END, '
            "\"status\" = 'pending'",
            [
                kind,
                json.dumps(dict(payload)),
                idempotency_key,
                ops.adapt_datetimefield_value(due),
                ops.adapt_datetimefield_value(now),
            ],
        )


RELAY_TASK = "outbox.relay"
# After a failed nudge this process stops nudging for a while: during a broker outage
# only one change per pause pays the connection timeout, the rest commit at full speed.
NUDGE_PAUSE_SECONDS = 30.0
_nudges_paused_until = 0.0


def nudge_relay(queue: str, *, countdown: float = 0) -> None:
    """Ask for a relay run on ``queue`` soon; call it from ``on_commit``. Best effort: the beat
    schedule delivers anyway, so a broker outage never fails the change that asked.

    The task is sent by name, so services never import task modules.
    """
    global _nudges_paused_until
    if time.monotonic() < _nudges_paused_until:
        return
    # The project's app, whichever Celery app is "current", named in settings like the handlers.
    app = import_string(settings.OUTBOX_CELERY_APP)
    try:
        app.send_task(
            RELAY_TASK, kwargs={"queue": queue}, queue=queue, countdown=countdown, retry=False, ignore_result=True
        )
    except Exception as exc:  # the periodic relay is the guarantee, this is only a shortcut
        _nudges_paused_until = time.monotonic() + NUDGE_PAUSE_SECONDS
        logger.info("relay nudge not sent (%s); the periodic relay will deliver", exc)
