"""OPA long polling on the bundle endpoint: answer when the revision changes, bounded per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from approvals.services import approve_request
from exceptions.bundle_watch import reset_revision_watch
from exceptions.models import BundleArtifact, BundlePublication, ServedBundle
from foundation.outbox.relay import relay_due

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

AUTH = {"HTTP_AUTHORIZATION": "Bearer test-bundle-token"}


@pytest.fixture(autouse=True)
def fresh_watch(settings: Any) -> Iterator[None]:
    settings.OPA_LONG_POLL_INTERVAL_SECONDS = 0.05
    reset_revision_watch()
    yield
    reset_revision_watch()


def current_etag(client: Client) -> str:
    return str(client.get("/bundles/egress.tar.gz", **AUTH)["ETag"])


def test_a_waiting_engine_gets_the_new_bundle_as_soon_as_a_grant_is_published(
    client: Client, publishing: Path, settings: Any, submit: Any, approver: Any
) -> None:
    """The approval's publish (the relay) moves the served revision; its NOTIFY wakes the waiter
    at once (the periodic re-read is set far beyond the test's bound)."""
    settings.OPA_LONG_POLL_RECHECK_SECONDS = 60
    request = submit()
    etag = current_etag(client)

    def approve_and_publish_later() -> None:
        try:
            time.sleep(0.4)
            approve_request(actor=approver, request=request)
            relay_due()
        finally:
            connection.close()

    approver_thread = threading.Thread(target=approve_and_publish_later)
    approver_thread.start()
    started = time.monotonic()
    response = client.get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH=etag, HTTP_PREFER="wait=30", **AUTH)
    elapsed = time.monotonic() - started
    approver_thread.join()
    published = BundlePublication.objects.get(status="published")
    assert response.status_code == 200 and response["ETag"] == f'"{published.revision}"' != etag
    assert response["Content-Type"] == "application/vnd.openpolicyagent.bundles"
    assert 0.3 < elapsed < 10, elapsed  # woke on the publish, not at the end of the wait


def test_a_lost_notification_is_caught_by_the_periodic_re_read(client: Client, settings: Any, submit: Any) -> None:
    """The pointer moves without a NOTIFY (as if the listening connection had dropped it): the
    watcher's re-read of the row wakes the waiter."""
    settings.OPA_LONG_POLL_RECHECK_SECONDS = 0.2
    etag = current_etag(client)
    other = BundleArtifact.objects.create(revision="moved-quietly", archive=b"x", sha256="0" * 64, size=1)

    def move_quietly() -> None:
        try:
            time.sleep(0.5)
            ServedBundle.objects.filter(pk=ServedBundle.ONE).update(
                artifact=other, revision=other.revision, sha256=other.sha256
            )
        finally:
            connection.close()

    mover = threading.Thread(target=move_quietly)
    mover.start()
    started = time.monotonic()
    response = client.get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH=etag, HTTP_PREFER="wait=30", **AUTH)
    elapsed = time.monotonic() - started
    mover.join()
    assert response.status_code == 200 and response["ETag"] == '"moved-quietly"' and response.content == b"x"
    assert 0.4 < elapsed < 5, elapsed


def test_no_change_within_the_wait_is_a_304_after_the_wait(client: Client, submit: Any) -> None:
    submit()
    etag = current_etag(client)
    started = time.monotonic()
    response = client.get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH=etag, HTTP_PREFER="wait=1", **AUTH)
    assert response.status_code == 304 and response["ETag"] == etag
    assert time.monotonic() - started >= 0.9


def test_a_stale_etag_is_answered_at_once_with_the_bundle(client: Client) -> None:
    started = time.monotonic()
    response = client.get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH='"old"', HTTP_PREFER="wait=30", **AUTH)
    assert response.status_code == 200 and time.monotonic() - started < 2
    assert response["Content-Type"] == "application/vnd.openpolicyagent.bundles"
    assert client.get("/bundles/egress.tar.gz", **AUTH)["Content-Type"] == "application/gzip"


def test_over_the_cap_of_waiting_requests_the_answer_is_immediate(client: Client, settings: Any) -> None:
    settings.OPA_LONG_POLL_MAX_WAITERS = 1
    reset_revision_watch()
    etag = current_etag(client)
    first: list[int] = []

    def occupy_the_slot() -> None:
        response = Client().get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH=etag, HTTP_PREFER="wait=2", **AUTH)
        first.append(response.status_code)

    waiting = threading.Thread(target=occupy_the_slot)
    waiting.start()
    time.sleep(0.3)
    started = time.monotonic()
    response = client.get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH=etag, HTTP_PREFER="wait=30", **AUTH)
    assert response.status_code == 304 and time.monotonic() - started < 1
    waiting.join()
    assert first == [304]


def test_the_wait_is_capped_by_the_setting(client: Client, settings: Any) -> None:
    settings.OPA_LONG_POLL_MAX_WAIT_SECONDS = 1
    etag = current_etag(client)
    started = time.monotonic()
    response = client.get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH=etag, HTTP_PREFER="wait=3600", **AUTH)
    assert response.status_code == 304 and time.monotonic() - started < 3
