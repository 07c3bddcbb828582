"""Structured (JSON) logs: the structlog pipeline and one line per decision.

Requests carry ``request_id`` (the same id the audit log records) and
``user_id`` from django-structlog's middleware, and ``token`` when an
integration token acted. ``log_decision`` is the one helper services call for
approve, reject, explain, publish and break-glass, so every decision has the
same fields wherever it is made.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
from django.dispatch import receiver
from django_structlog import signals

from foundation.actors import actor_for, token_label, user_of
from foundation.context import current_request_id

decision_logger = structlog.get_logger("egress_portal.decisions")

SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_structlog() -> None:
    """structlog hands its events to the standard library, which LOGGING formats (JSON or console)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """``LOGGING`` for Django: every record, structlog's or not, rendered by one formatter."""
    # JSON for log pipelines; the console renderer for people at a terminal (make run).
    renderer = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    renderer,
                ],
                "foreign_pre_chain": SHARED_PROCESSORS,
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        # One line per request comes from django-structlog; Django's own would repeat it.
        "loggers": {"django.request": {"level": "ERROR"}, "django.server": {"level": "WARNING"}},
    }


@receiver(signals.bind_extra_request_metadata)
def _bind_portal_request_id(**kwargs: Any) -> None:
    # One id per request: the one RequestIdMiddleware made (and the audit log stores).
    if current_request_id():
        structlog.contextvars.bind_contextvars(request_id=current_request_id())


@receiver(signals.bind_extra_request_finished_metadata)
def _bind_token(request: Any = None, **kwargs: Any) -> None:
    # The token is known only after DRF authenticated the request (DRF sets ``auth`` on it too).
    label = token_label(actor_for(request)) if getattr(request, "auth", None) is not None else ""
    if label:
        structlog.contextvars.bind_contextvars(token=label)


def _actor_label(actor: Any) -> str:
    if actor is None:
        return ""
    actor = user_of(actor)
    if hasattr(actor, "get_username"):
        return str(actor.get_username())
    return str(getattr(actor, "label", actor))


def log_decision(
    decision: str,
    *,
    actor: Any = None,
    identity: str = "",
    outcome: str = "",
    rule: str = "",
    reason: str = "",
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """One structured line for a decision (approve, reject, explain, publish, break-glass).

    Services call it after their transaction committed, so a decision rolled
    back is never logged as made. Logs may name hosts and identities; metric
    labels never do.
    """
    fields = {"request_id": current_request_id(), "token": token_label(actor), **fields}
    decision_logger.log(
        level,
        "decision",
        decision=decision,
        actor=_actor_label(actor),
        identity=identity,
        outcome=outcome,
        rule=rule,
        reason=reason,
        **{k: v for k, v in fields.items() if v != ""},
    )


def log_request_decision(decision: str, *, actor: Any, request: Any, reason: str, rule: str = "") -> None:
    """An approver's decision on a request (approve, reject, request changes) and the rule it counted under."""
    log_decision(
        decision,
        actor=actor,
        identity=request.workload.identity,
        outcome=str(request.status),
        rule=rule,
        reason=reason,
        exception_request=request.pk,
        risk_tier=str(request.risk_tier),
    )


def log_explanation(result: Any, *, user: Any = None) -> None:
    """An explain verdict: the same identity, matched rule and reason OPA would give."""
    log_decision(
        "explain",
        actor=user,
        identity=result.identity,
        outcome="allow" if result.allow else "deny",
        rule=result.matched_rule or "",
        reason=result.reason,
        host=result.host,
        port=result.port,
        protocol=result.protocol,
        grant_id=result.grant_id,
    )


def log_publication(publication: Any) -> None:
    """A bundle publish attempt (published, unchanged or failed), from its BundlePublication row."""
    log_decision(
        "publish",
        outcome=str(publication.status),
        reason=publication.trigger,
        level=logging.WARNING if publication.status == "failed" else logging.INFO,
        revision=publication.revision,
        commit=publication.commit,
        grant_count=publication.grant_count,
        added=publication.added,
        removed=publication.removed,
        error=publication.error,
    )
