"""The request page's decision facts (approvals/_request_panel.html)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template

from approvals.models import Decision
from approvals.outcome import Outcome, request_outcome
from exceptions.models import ExceptionRequest

register = template.Library()


@register.simple_tag
def decision_outcome(req: ExceptionRequest, decisions: Iterable[Decision], timeline: Iterable[Any]) -> Outcome:
    """``{% decision_outcome req decisions timeline as outcome %}``: what is true about decisions."""
    return request_outcome(req, decisions, timeline)
