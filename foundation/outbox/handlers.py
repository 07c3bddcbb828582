"""Delivering one outbox row per kind.

The registry is the setting ``OUTBOX_HANDLERS`` (kind -> dotted path of a
callable taking the row). Later issues add their kinds in their settings block,
e.g. ``OUTBOX_HANDLERS["webhook"] = "approvals.webhooks.deliver"``; the outbox
never imports the apps that use it, so nothing points back.
"""

from __future__ import annotations

import hashlib
import smtplib
from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.module_loading import import_string

from foundation.outbox.errors import DeliveryError
from foundation.outbox.models import OutboxMessage

Handler = Callable[[OutboxMessage], None]


@cache
def _load(path: str) -> Handler:
    handler: Handler = import_string(path)
    return handler


def handler_for(kind: str) -> Handler:
    path = settings.OUTBOX_HANDLERS.get(kind)
    if not path:
        raise DeliveryError(f"No handler for outbox kind {kind!r}; add it to OUTBOX_HANDLERS.", permanent=True)
    return _load(path)


def message_id(idempotency_key: str) -> str:
    """The same key always gives the same Message-ID, so a repeated delivery is a duplicate mail readers
    and servers can drop, never a second, different notification."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@egress-portal>"


def send_mail(message: OutboxMessage) -> None:
    """Deliver a ``mail`` row through Django's configured mail backend."""
    payload = message.payload
    try:
        to, subject, text = list(payload["to"]), str(payload["subject"]), str(payload["text"])
    except (KeyError, TypeError) as exc:
        raise DeliveryError(f"malformed mail payload: {exc!r}", permanent=True) from exc
    mail = EmailMultiAlternatives(
        subject=subject, body=text, to=to, headers={"Message-ID": message_id(message.idempotency_key)}
    )
    if payload.get("html"):
        mail.attach_alternative(str(payload["html"]), "text/html")
    try:
        mail.send(fail_silently=False)
    except smtplib.SMTPResponseException as exc:
        # 5xx is the server's final answer; 4xx (greylisting, full queue) is worth another try.
        raise DeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=exc.smtp_code >= 500) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise DeliveryError(f"recipients refused: {exc.recipients!r}", permanent=min(codes) >= 500) from exc
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP unavailable: {exc!r}") from exc


def noop(message: OutboxMessage) -> None:
    """Delivers nothing; the benchmarks measure the relay itself with it."""
