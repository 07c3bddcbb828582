"""API rate limits per integration token and per person, in the shared cache.

A fixed window per (scope, caller): ``cache.add`` starts the window and
``cache.incr`` counts atomically, so every web process behind the same Redis
shares one count (the production cache; see settings). Limits are
``EGRESS_API_RATE_LIMITS`` (``{"token": "600/min", "user": "1200/min"}``): a
token has its own budget and all of a person's calls, session or token, share
theirs. Each answer carries ``RateLimit-Limit``/``-Remaining``/``-Reset`` and
``RateLimit-Policy`` for the tightest budget; over it, ``429`` with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from foundation.actors import integration_token

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/min"`` → (600, 60)."""
    count, _, period = rate.partition("/")
    try:
        return int(count), PERIODS[period.strip().lower()]
    except (ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"Rate {rate!r}: write it as <count>/<s|min|hour>, for example 600/min.") from exc


@dataclass(frozen=True)
class Budget:
    scope: str
    limit: int
    window: int
    used: int
    reset: int  # seconds until the window ends

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def _consume(scope: str, ident: str, rate: str, now: float) -> Budget:
    limit, window = parse_rate(rate)
    start = int(now // window) * window
    key = f"ratelimit:{scope}:{ident}:{start}"
    # add() is a no-op when the window already exists; incr() is atomic in Redis.
    cache.add(key, 0, timeout=window + 1)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=window + 1)
        used = 1
    return Budget(scope=scope, limit=limit, window=window, used=used, reset=max(1, math.ceil(start + window - now)))


def consume(scope: str, ident: str, rate: str, *, now: float | None = None) -> Budget:
    """Count one call of ``ident`` against its ``rate`` budget in ``scope`` (any cache backend:
    Redis in production, the embedded file cache or local memory otherwise)."""
    return _consume(scope, ident, rate, time.time() if now is None else now)


def budgets_for(request: Request) -> list[tuple[str, str]]:
    """(scope, caller) pairs this call counts against."""
    user = request.user
    if not getattr(user, "is_authenticated", False):
        return []
    pairs = [("user", str(user.pk))]
    token = integration_token(request)
    if token is not None:
        pairs.insert(0, ("token", str(token.pk)))
    return pairs


def rate_limit_headers(budget: Budget) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(budget.limit),
        "RateLimit-Remaining": str(budget.remaining),
        "RateLimit-Reset": str(budget.reset),
        "RateLimit-Policy": f'{budget.limit};w={budget.window};comment="{budget.scope}"',
    }


class ApiRateThrottle(BaseThrottle):
    """Counts the call against every budget it belongs to; refuses when one is spent."""

    def allow_request(self, request: Request, view: Any) -> bool:
        rates = settings.EGRESS_API_RATE_LIMITS
        now = time.time()
        budgets = [_consume(scope, ident, rates[scope], now) for scope, ident in budgets_for(request) if scope in rates]
        if not budgets:
            return True
        # The headers describe the budget closest to running out.
        tightest = min(budgets, key=lambda b: (b.remaining, -b.reset))
        request._request.ratelimit_budget = tightest  # type: ignore[attr-defined]
        spent = [b for b in budgets if b.used > b.limit]
        self._wait = max((b.reset for b in spent), default=None)
        return not spent

    def wait(self) -> float | None:
        return self._wait
