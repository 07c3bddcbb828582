"""Fixtures for the people of the domain and the real services the suite uses.

Tests marked postgres/redis/celery_worker/browser/compose/opa need a real part.
When it is missing they are skipped with the reason, except under CI=true,
where they fail: CI must exercise every real part.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from egress_portal.worker_process import start_worker, stop_worker, wait_until_ready
from exceptions.access import AUDITOR_GROUP, SECURITY_GROUP
from tests.factories import ApproverGroupFactory, MembershipFactory, TeamFactory, UserFactory, WorkloadFactory

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def _redis_ok() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


def _opa_ok() -> bool:
    try:
        import opa_bindings  # noqa: F401
    except Exception:
        return False
    return True


def _available() -> dict[str, tuple[bool, str]]:
    engine = settings.DATABASES["default"]["ENGINE"]
    return {
        "postgres": (engine.endswith("postgresql"), f"PostgreSQL is not in use (DATABASE_URL={settings.DATABASE_URL})"),
        "redis": (_redis_ok(), f"Redis is not reachable at {settings.REDIS_URL}"),
        "celery_worker": (
            engine.endswith("postgresql") and _redis_ok(),
            "a real Celery worker needs PostgreSQL and Redis",
        ),
        "browser": (
            Path(CHROMIUM).exists() and _module("playwright"),
            f"Chromium ({CHROMIUM}) or Playwright is missing: apt-get install chromium",
        ),
        "compose": (shutil.which("docker-compose") is not None, "docker-compose is not installed"),
        "opa": (_opa_ok(), "the OPA bindings are not installed (make install-dev)"),
    }


def _module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


_AVAILABILITY: dict[str, tuple[bool, str]] = {}


def pytest_report_header(config: pytest.Config) -> list[str]:
    _AVAILABILITY.update(_available())
    parts = [f"{name}={'yes' if ok else 'NO'}" for name, (ok, _) in _AVAILABILITY.items()]
    return [f"real services: {' '.join(parts)}" + (" (CI: missing ones fail)" if IN_CI else "")]


@pytest.fixture(autouse=True)
def _require_real_parts(request: pytest.FixtureRequest) -> None:
    if not _AVAILABILITY:
        _AVAILABILITY.update(_available())
    for marker in request.node.iter_markers():
        if marker.name in _AVAILABILITY:
            ok, reason = _AVAILABILITY[marker.name]
            if not ok:
                if IN_CI:
                    pytest.fail(f"CI requires this real part: {reason}", pytrace=False)
                pytest.skip(reason)


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Every test starts with empty caches: a value cached by one test (a bundle
    archive, a rate-limit counter) must never answer for another."""
    from django.core.cache import caches

    from exceptions.bundle_views import forget_archives
    from exceptions.services.publications import forget_open_records

    for alias in settings.CACHES:
        caches[alias].clear()
    # This process's reads of the open grants too: on SQLite a later test reuses ids and
    # audit sequence numbers, so a read cached by one test could pass for another's grants.
    forget_open_records()
    forget_archives()
    yield
    for alias in settings.CACHES:
        caches[alias].clear()


# --- People -------------------------------------------------------------------


@pytest.fixture
def team(db: Any) -> Any:
    return TeamFactory(name="Payments", slug="payments")


@pytest.fixture
def other_team(db: Any) -> Any:
    return TeamFactory(name="Platform", slug="platform")


@pytest.fixture
def requester(team: Any) -> Any:
    user = UserFactory(username="alice")
    MembershipFactory(team=team, user=user)
    return user


@pytest.fixture
def teammate(team: Any) -> Any:
    user = UserFactory(username="dave")
    MembershipFactory(team=team, user=user)
    return user


@pytest.fixture
def approver(team: Any, other_team: Any) -> Any:
    user = UserFactory(username="bob")
    ApproverGroupFactory(name="Egress approvers", teams=[team, other_team], members=[user])
    return user


@pytest.fixture
def security_officer(db: Any) -> Any:
    user = UserFactory(username="sec")
    Group.objects.get_or_create(name=SECURITY_GROUP)[0].user_set.add(user)
    return user


@pytest.fixture
def auditor(db: Any) -> Any:
    user = UserFactory(username="audrey")
    Group.objects.get_or_create(name=AUDITOR_GROUP)[0].user_set.add(user)
    return user


@pytest.fixture
def outsider(other_team: Any) -> Any:
    user = UserFactory(username="charlie")
    MembershipFactory(team=other_team, user=user)
    return user


@pytest.fixture
def workload(team: Any) -> Any:
    return WorkloadFactory(
        team=team, name="checkout-api", namespace="payments", service_account="checkout-api", environment="staging"
    )


@pytest.fixture
def prod_workload(team: Any) -> Any:
    return WorkloadFactory(
        team=team, name="checkout-prod", namespace="payments-prod", service_account="checkout", environment="prod"
    )


@pytest.fixture
def open_prod_window(db: Any) -> Any:
    """A production change window that is always open (daily, 24 h), for tests about other things."""
    from approvals.models import ChangeWindow

    return ChangeWindow.objects.create(
        name="always",
        environments=["prod"],
        rrule="FREQ=DAILY",
        first_start=datetime(2020, 1, 1, tzinfo=UTC),
        duration=timedelta(hours=24),
        time_zone="UTC",
    )


@pytest.fixture
def submit(requester: Any, workload: Any) -> Any:
    """Submit a request through the service with sensible defaults."""
    from exceptions.services.requests import submit_request

    def _submit(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "actor": requester,
            "workload": workload,
            "destinations": [{"host": "api.partner.example", "port": 443, "protocol": "tcp"}],
            "purpose": "partner_api",
            "data_class": "internal",
            "justification": "Settles card payments with the partner every night at 02:00.",
            "ticket_ref": "CHG-1",
            "lifetime": timedelta(days=7),
        }
        values.update(overrides)
        return submit_request(**values)

    return _submit


# --- Real services ------------------------------------------------------------


@pytest.fixture
def policy_repo(settings: Any, tmp_path: Path) -> Path:
    """A fresh bare policy repository (created by the first publish) and working copy."""
    settings.POLICY_REPO_URL = str(tmp_path / "policy.git")
    settings.POLICY_WORK_DIR = tmp_path / "policy-work"
    return tmp_path / "policy.git"


@pytest.fixture
def celery_worker(django_db_setup: Any, transactional_db: Any, policy_repo: Path, settings: Any) -> Iterator[Any]:
    """A real `celery worker` process over Redis, on the test database and policy repository."""
    from egress_portal.celery import app

    db = settings.DATABASES["default"]
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.test",
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "POLICY_REPO_URL": settings.POLICY_REPO_URL,
        "POLICY_WORK_DIR": str(settings.POLICY_WORK_DIR),
        "EGRESS_AUTO_PUBLISH": "true",
        "BUNDLE_PUBLISH_DELAY_SECONDS": "1",
    }
    app.control.purge()
    hostname = f"test-worker-{os.getpid()}@localhost"
    process = start_worker(hostname=hostname, env=env)
    try:
        try:
            wait_until_ready(app, process, hostname)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield app
    finally:
        stop_worker(process)


@pytest.fixture(scope="session")
def live_server(django_db_setup: Any) -> Iterator[Any]:
    """pytest-django's live server, stopped before the test database is dropped
    (its thread holds a connection that would otherwise block the drop)."""
    from pytest_django.live_server_helper import LiveServer

    server = LiveServer(os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS", "localhost"))
    yield server
    server.stop()
