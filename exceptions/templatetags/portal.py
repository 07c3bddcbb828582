from __future__ import annotations

from datetime import timedelta

from django import template

from exceptions.risk import format_duration

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """7 days, 36 hours: lifetimes as people say them."""
    return format_duration(value) if value is not None else ""
