"""Observed traffic on the grant and request pages, as one-line includes (the pages' views stay as they are)."""

from __future__ import annotations

from typing import Any

from django import template

from exceptions.access import revoke_denial
from exceptions.models import Grant
from traffic import selectors
from traffic.models import StaleNotice

register = template.Library()


@register.inclusion_tag("traffic/_grant_traffic.html", takes_context=True)
def grant_traffic(context: dict[str, Any], grant: Grant) -> dict[str, Any]:
    notice = StaleNotice.objects.filter(grant=grant).first()
    user = context["request"].user
    return {
        "grant": grant,
        "last_seen": selectors.grant_last_seen(grant),
        "days": list(selectors.grant_traffic_by_day(grant)),
        "notice": notice,
        "can_keep": notice is not None
        and notice.status == StaleNotice.Status.NOTICED
        and notice.kept_at is None
        and revoke_denial(user, grant) is None,
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("traffic/_grants_last_seen.html")
def grants_last_seen(grants: list[Grant]) -> dict[str, Any]:
    seen = selectors.grants_last_seen([g.pk for g in grants])
    return {"rows": [(g, seen.get(g.pk)) for g in grants]}
