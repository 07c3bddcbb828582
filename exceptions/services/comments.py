"""Comments on a request: anyone who may see the request may add one."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import record_event
from exceptions.models import ExceptionRequest, RequestComment

MAX_COMMENT_LENGTH = 10_000


def add_comment(*, actor: Any, request: ExceptionRequest, body: str) -> RequestComment:
    """Add a comment; the caller has checked the actor may see ``request`` (access_request)."""
    text = (body or "").strip()
    if not text:
        raise ValidationError({"body": ["Write the comment; an empty comment says nothing."]})
    if len(text) > MAX_COMMENT_LENGTH:
        raise ValidationError({"body": [f"Keep a comment under {MAX_COMMENT_LENGTH} characters ({len(text)} given)."]})
    with transaction.atomic():
        comment = RequestComment.objects.create(request=request, author=actor, body=text)
        record_event(
            actor=actor,
            action="request.commented",
            obj=request,
            after={"comment": comment.pk, "body": text},
        )
    return comment
