"""Writing outbox rows. Callers are services inside their own transaction; the relay delivers later.

Nothing is sent from here and nothing is sent from ``on_commit``: if the change
rolls back, so does its side effect; if it commits, the relay delivers it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.template.exceptions import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import timezone

from egress_portal.outbox.models import OutboxMessage

MAIL = "mail"


def enqueue(
    *, kind: str, payload: Mapping[str, Any], idempotency_key: str, available_at: datetime | None = None
) -> OutboxMessage:
    """Add a side effect to the caller's transaction; a second row with the same key is not added."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("enqueue() runs inside the transaction of the change that causes the side effect.")
    OutboxMessage.objects.bulk_create(
        [
            OutboxMessage(
                kind=kind,
                payload=dict(payload),
                idempotency_key=idempotency_key,
                available_at=available_at or timezone.now(),
            )
        ],
        ignore_conflicts=True,
    )
    return OutboxMessage.objects.get(idempotency_key=idempotency_key)


def enqueue_mail(
    *,
    to: Sequence[str],
    subject: str,
    template: str,
    context: Mapping[str, Any],
    idempotency_key: str,
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
    return enqueue(kind=MAIL, payload=payload, idempotency_key=idempotency_key)
