from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from exceptions.models import BundlePublication
from foundation.outbox.models import OutboxMessage, OutboxStatus


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def ready_world(settings: Any, policy_repo: Path) -> None:
    """Everything readiness wants: a real broker, a reachable repository, a recent publish."""
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    policy_repo.parent.mkdir(parents=True, exist_ok=True)
    import git

    git.Repo.init(policy_repo, bare=True)
    BundlePublication.objects.create(status=BundlePublication.Status.PUBLISHED, revision="r1", trigger="test")
    settings.METRICS_TOKEN = "scrape-me"


def _ready(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz", headers={"Authorization": "Bearer scrape-me"})
    return response.status_code, response.json()


@pytest.mark.django_db
def test_healthz_answers_without_touching_dependencies(client: Client, settings: Any) -> None:
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_is_ok_when_every_dependency_answers(client: Client, ready_world: None) -> None:
    status, body = _ready(client)
    assert status == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "policy_repository", "last_publish", "outbox"}
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_fails_naming_the_broker_when_it_is_down(client: Client, ready_world: None, settings: Any) -> None:
    settings.CELERY_BROKER_URL = f"redis://:hunter2@127.0.0.1:{_closed_port()}/0"
    status, body = _ready(client)
    assert status == 503 and body["status"] == "unavailable"
    assert not body["checks"]["broker"]["ok"]
    assert "hunter2" not in str(body)
    assert body["checks"]["database"]["ok"] and body["checks"]["policy_repository"]["ok"]


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_fails_naming_the_repository_when_it_is_down(client: Client, ready_world: None, settings: Any) -> None:
    settings.POLICY_REPO_URL = f"http://127.0.0.1:{_closed_port()}/policy.git"
    status, body = _ready(client)
    assert status == 503
    check = body["checks"]["policy_repository"]
    assert not check["ok"] and settings.POLICY_REPO_URL in check["detail"]
    assert body["checks"]["broker"]["ok"]


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_fails_when_the_last_publish_is_too_old_or_the_outbox_parks(
    client: Client, ready_world: None, settings: Any
) -> None:
    settings.READY_MAX_PUBLISH_AGE_SECONDS = 600
    BundlePublication.objects.update(created_at=timezone.now() - timedelta(hours=1))
    OutboxMessage.objects.create(
        kind="mail", idempotency_key="k1", status=OutboxStatus.PARKED, available_at=timezone.now()
    )
    status, body = _ready(client)
    assert status == 503
    assert not body["checks"]["last_publish"]["ok"]
    assert "limit 600 s" in body["checks"]["last_publish"]["detail"]
    assert body["checks"]["outbox"] == {"ok": False, "detail": "1 parked outbox rows"}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_readyz_fails_naming_the_database_when_it_is_down(client: Client, ready_world: None) -> None:
    original = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = _closed_port()
    try:
        status, body = _ready(client)
    finally:
        connection.close()
        connection.settings_dict.update(original)
    assert status == 503
    assert not body["checks"]["database"]["ok"]
    assert body["checks"]["outbox"]["detail"] == "not checked: the database is unreachable"
    assert body["checks"]["broker"]["ok"] and body["checks"]["policy_repository"]["ok"]


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_tells_an_anonymous_caller_only_the_status(client: Client, ready_world: None, settings: Any) -> None:
    settings.POLICY_REPO_URL = f"http://127.0.0.1:{_closed_port()}/policy.git"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer é"}):
        response = client.get("/readyz", headers=headers)
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable"}, headers
    settings.POLICY_REPO_URL = settings.POLICY_REPO_URL.replace("/policy.git", "/nowhere")
    status, body = _ready(client)
    assert status == 503 and "/nowhere" in body["checks"]["policy_repository"]["detail"]


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_shows_details_to_staff_even_without_a_metrics_token(
    client: Client, ready_world: None, settings: Any, django_user_model: Any
) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/readyz").json() == {"status": "ok"}
    client.force_login(django_user_model.objects.create_user("ops", is_staff=True))
    body = client.get("/readyz").json()
    assert body["status"] == "ok" and set(body["checks"]) >= {"database", "broker"}
