"""Rate limits per token and per person, with 429, Retry-After and RateLimit headers."""

from __future__ import annotations

import os
from typing import Any

import pytest
from rest_framework.test import APIClient

from exceptions.tokens import create_token
from tests.api_problems import problem

pytestmark = pytest.mark.django_db


def bearer(user: Any, name: str) -> APIClient:
    _, key = create_token(actor=user, user=user, name=name, scopes=["requests:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_a_token_over_its_budget_gets_429_with_retry_after(settings: Any, requester: Any) -> None:
    settings.EGRESS_API_RATE_LIMITS = {"token": "3/min", "user": "100/min"}
    jira = bearer(requester, "jira")
    remaining = [jira.get("/api/v1/requests/")["RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    refused = jira.get("/api/v1/requests/")
    assert problem(refused, 429)["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Limit"] == "3" and refused["RateLimit-Remaining"] == "0"
    assert refused["RateLimit-Policy"] == '3;w=60;comment="token"'
    # Another token of the same person has its own budget.
    assert bearer(requester, "ci").get("/api/v1/requests/").status_code == 200


def test_a_person_shares_one_budget_across_session_and_tokens(settings: Any, requester: Any, teammate: Any) -> None:
    settings.EGRESS_API_RATE_LIMITS = {"token": "100/min", "user": "2/min"}
    browser = APIClient()
    browser.force_authenticate(requester)
    assert browser.get("/api/v1/requests/").status_code == 200
    assert bearer(requester, "jira").get("/api/v1/requests/").status_code == 200
    assert problem(browser.get("/api/v1/requests/"), 429)["code"] == "throttled"
    other = APIClient()
    other.force_authenticate(teammate)
    assert other.get("/api/v1/requests/").status_code == 200


@pytest.mark.redis
def test_the_count_lives_in_the_shared_redis_cache(settings: Any, requester: Any) -> None:
    import redis

    url = os.environ.get("REDIS_URL", settings.REDIS_URL)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    settings.EGRESS_API_RATE_LIMITS = {"token": "2/min", "user": "100/min"}
    jira = bearer(requester, "jira")
    assert jira.get("/api/v1/requests/").status_code == 200
    # A second web process is a second connection to the same Redis: it sees the count.
    other_process = redis.Redis.from_url(url)
    keys = other_process.keys("*ratelimit:token:*")
    assert len(keys) == 1 and int(other_process.get(keys[0]) or 0) == 1
    other_process.incr(keys[0])
    assert problem(jira.get("/api/v1/requests/"), 429)["code"] == "throttled"
    other_process.delete(*keys)
