"""Liveness (``/healthz``) and readiness (``/readyz``) for container health checks and load balancers.

``/healthz`` says the process answers; it touches nothing else, so a database
outage does not get every web container restarted. ``/readyz`` says the portal
can do its work: database, broker and policy repository reachable, the bundle
published recently, and no outbox row parked (a side effect given up on).

Anyone gets the status (200 or 503 and ``{"status": ...}``), enough for a load
balancer. The checks, with their details (hosts, ages, error text), go only to a
caller holding the metrics token (``Authorization: Bearer $METRICS_TOKEN``, as
for ``/metrics``) or signed in as staff: they map the deployment for an attacker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from kombu import Connection

from foundation.bearer import has_bearer_token


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str = ""


_URL_CREDENTIALS = re.compile(r"://[^/@\s]*@")


def _brief(exc: BaseException) -> str:
    # One line for an unauthenticated endpoint: no credentials from URLs in it.
    text = (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:300]
    return _URL_CREDENTIALS.sub("://***@", text)


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # a health check reports, it does not raise
        return Check(False, _brief(exc))
    return Check(True)


def check_broker() -> Check:
    timeout = settings.READY_CHECK_TIMEOUT_SECONDS
    try:
        with Connection(
            settings.CELERY_BROKER_URL,
            connect_timeout=timeout,
            transport_options={**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "socket_timeout": timeout},
        ) as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:
        return Check(False, _brief(exc))
    return Check(True)


def check_repository() -> Check:
    # Not at the top: the URLconf imports this module, and git (pygit2, GitPython) costs 13 MB per worker.
    from audit.checkpoint_git import remote_reachable

    problem = remote_reachable(
        url=settings.POLICY_REPO_URL,
        username=settings.POLICY_REPO_USERNAME,
        password=settings.POLICY_REPO_PASSWORD,
        timeout=settings.READY_CHECK_TIMEOUT_SECONDS,
    )
    return Check(not problem, problem)


def check_last_publish() -> Check:
    from exceptions.models import BundlePublication

    last = (
        BundlePublication.objects.exclude(status=BundlePublication.Status.FAILED)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    limit = timedelta(seconds=settings.READY_MAX_PUBLISH_AGE_SECONDS)
    if last is None:
        return Check(False, "the bundle has never been published")
    age = timezone.now() - last
    if age > limit:
        seconds, allowed = int(age.total_seconds()), int(limit.total_seconds())
        return Check(False, f"last successful publish {seconds} s ago (limit {allowed} s)")
    return Check(True, f"{int(age.total_seconds())} s ago")


def check_outbox() -> Check:
    from foundation.outbox.models import OutboxMessage, OutboxStatus

    parked = OutboxMessage.objects.filter(status=OutboxStatus.PARKED).count()
    return Check(parked == 0, f"{parked} parked outbox rows" if parked else "")


CHECKS: dict[str, Callable[[], Check]] = {
    "database": check_database,
    "broker": check_broker,
    "policy_repository": check_repository,
    "last_publish": check_last_publish,
    "outbox": check_outbox,
}
NEEDS_DATABASE = {"last_publish", "outbox"}


def readiness() -> dict[str, Check]:
    results: dict[str, Check] = {}
    for name, check in CHECKS.items():
        if name in NEEDS_DATABASE and not results["database"].ok:
            results[name] = Check(False, "not checked: the database is unreachable")
            continue
        try:
            results[name] = check()
        except Exception as exc:
            results[name] = Check(False, _brief(exc))
    return results


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and serving."""
    return JsonResponse({"status": "ok"})


def may_see_details(request: HttpRequest) -> bool:
    """The metrics token or a staff session; with no METRICS_TOKEN configured, staff only."""
    if has_bearer_token(request, settings.METRICS_TOKEN):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when every dependency answers, 503 otherwise; with the metrics
    token (or a staff session) the body names each check and why it failed."""
    started = time.monotonic()
    results = readiness()
    ready = all(check.ok for check in results.values())
    body: dict[str, object] = {"status": "ok" if ready else "unavailable"}
    if may_see_details(request):
        body["checks"] = {name: {"ok": check.ok, "detail": check.detail} for name, check in results.items()}
        body["duration_ms"] = int((time.monotonic() - started) * 1000)
    return JsonResponse(body, status=200 if ready else 503)
