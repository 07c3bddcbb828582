"""Comments on a request by those who take part in it (not an auditor, who only reads)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from audit.services import record_event
from exceptions.access import roles_for
from exceptions.models import ExceptionRequest, RequestComment
from foundation.actors import user_of

MAX_COMMENT_LENGTH = 10_000


def comment_denial(user: Any, request: ExceptionRequest) -> str | None:
    """Those who take part in a request may comment; an auditor only reads."""
    roles = roles_for(user)
    team_id = request.workload.team_id
    if user.pk in {request.requester_id, request.filed_by_id} or roles.is_admin or roles.is_security:
        return None
    if team_id in roles.member_team_ids or team_id in roles.approver_team_ids:
        return None
    return "Only the requester, the owning team, its approvers or a security officer may comment on this request."


def add_comment(*, actor: Any, request: ExceptionRequest, body: str) -> RequestComment:
    """Add a comment; the caller has checked the actor may see ``request`` (access_request)."""
    denial = comment_denial(user_of(actor), request)
    if denial:
        raise PermissionDenied(denial)
    text = (body or "").strip()
    if not text:
        raise ValidationError({"body": ["Write the comment; an empty comment says nothing."]})
    if len(text) > MAX_COMMENT_LENGTH:
        raise ValidationError({"body": [f"Keep a comment under {MAX_COMMENT_LENGTH} characters ({len(text)} given)."]})
    with transaction.atomic():
        comment = RequestComment.objects.create(request=request, author=user_of(actor), body=text)
        record_event(
            actor=actor,
            action="request.commented",
            obj=request,
            after={"comment": comment.pk, "body": text},
        )
    return comment
