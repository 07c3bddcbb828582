"""OPA long polling on the bundle endpoint: answer when the revision changes, bounded per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from approvals.services import approve_request
from exceptions.bundle_watch import reset_revision_watch

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


def test_a_waiting_engine_gets_the_new_bundle_as_soon_as_a_grant_lands(
    client: Client, submit: Any, approver: Any
) -> None:
    request = submit()
    etag = current_etag(client)

    def approve_later() -> None:
        time.sleep(0.4)
        approve_request(actor=approver, request=request)

    approver_thread = threading.Thread(target=approve_later)
    approver_thread.start()
    started = time.monotonic()
    response = client.get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH=etag, HTTP_PREFER="wait=10", **AUTH)
    elapsed = time.monotonic() - started
    approver_thread.join()
    assert response.status_code == 200 and response["ETag"] != etag
    assert response["Content-Type"] == "application/vnd.openpolicyagent.bundles"
    assert 0.3 < elapsed < 5, elapsed  # woke on the change, not at the end of the wait


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
