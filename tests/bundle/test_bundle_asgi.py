"""The OPA bundle endpoint under uvicorn (``egress_portal.asgi``): the WSGI endpoint's contract,
with long polls that wait on the event loop, woken by the publish's NOTIFY or the re-read."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from approvals.services import approve_request
from exceptions.models import BundleArtifact, BundlePublication, ServedBundle
from exceptions.services.publications import ensure_served_bundle
from foundation.outbox.relay import relay_due

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
PATH = "/bundles/egress.tar.gz"
AUTH = {"Authorization": "Bearer test-bundle-token"}

Server = Callable[..., int]


def _database_url() -> str:
    db = django_settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, headers: dict[str, str], path: str = PATH) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """Start ``uvicorn egress_portal.asgi:<app>`` on the test database; returns its port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(app: str = "bundles", **environment: str) -> int:
        port = _free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "egress_portal.settings.test",
            "DATABASE_URL": _database_url(),
            "POLICY_REPO_URL": str(tmp_path / "policy.git"),
            "POLICY_WORK_DIR": str(tmp_path / "policy-work"),
            **environment,
        }
        command = [sys.executable, "-m", "uvicorn", f"egress_portal.asgi:{app}", "--port", str(port)]
        log = (tmp_path / f"uvicorn-{port}.log").open("wb")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return port
            except OSError:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
        pytest.fail(f"uvicorn did not start: {(tmp_path / f'uvicorn-{port}.log').read_text()}")

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a server stuck in a busy loop does not get to its shutdown
            process.kill()
            process.wait(timeout=10)


def served_etag() -> str:
    revision, _ = ensure_served_bundle()
    return f'"{revision}"'


def move_quietly_later(delay: float) -> threading.Thread:
    """Move the pointer without a NOTIFY, as if the listening connection had lost it."""
    other = BundleArtifact.objects.create(revision="moved-quietly", archive=b"x", sha256="0" * 64, size=1)

    def move() -> None:
        try:
            time.sleep(delay)
            ServedBundle.objects.filter(pk=ServedBundle.ONE).update(
                artifact=other, revision=other.revision, sha256=other.sha256
            )
        finally:
            connection.close()

    mover = threading.Thread(target=move)
    mover.start()
    return mover


def test_a_poll_without_the_token_is_refused(server: Server) -> None:
    port = server()
    status, headers, _ = get(port, {})
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="egress-portal"'
    assert get(port, {"Authorization": "Bearer wrong"})[0] == 401
    assert get(port, {"Authorization": "Bearer é"})[0] == 401


def test_a_200_serves_the_stored_bytes_and_the_etag_then_304(server: Server) -> None:
    etag = served_etag()
    artifact = ServedBundle.objects.get(pk=ServedBundle.ONE).artifact
    port = server()
    status, headers, body = get(port, {**AUTH, "If-None-Match": '"an-older-revision"'})
    assert status == 200 and headers["etag"] == etag and headers["cache-control"] == "no-cache"
    assert body == bytes(artifact.archive) and headers["content-length"] == str(artifact.size)
    assert headers["content-type"] == "application/gzip"
    status, headers, body = get(port, {**AUTH, "If-None-Match": etag})
    assert status == 304 and headers["etag"] == etag and body == b""
    status, headers, _ = get(port, {**AUTH, "Prefer": "wait=5"})
    assert status == 200 and headers["content-type"] == "application/vnd.openpolicyagent.bundles"


def test_only_get_is_answered(server: Server) -> None:
    port = server()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", PATH, body=b"", headers=AUTH)
    response = connection.getresponse()
    assert response.status == 405 and response.getheader("Allow") == "GET"
    connection.close()


def test_no_change_within_the_wait_is_a_304_after_the_wait(server: Server) -> None:
    etag = served_etag()
    port = server()
    started = time.monotonic()
    status, headers, _ = get(port, {**AUTH, "If-None-Match": etag, "Prefer": "wait=1"})
    assert status == 304 and headers["etag"] == etag
    assert 0.9 <= time.monotonic() - started < 5


def test_the_wait_is_capped_by_the_setting(server: Server) -> None:
    etag = served_etag()
    port = server(OPA_LONG_POLL_MAX_WAIT_SECONDS="1")
    started = time.monotonic()
    assert get(port, {**AUTH, "If-None-Match": etag, "Prefer": "wait=3600"})[0] == 304
    assert time.monotonic() - started < 3


@pytest.mark.postgres
def test_waiters_are_woken_by_the_publishs_notify(server: Server, publishing: Path, submit: Any, approver: Any) -> None:
    """The approval's publish NOTIFYs; every waiter of the process gets the new bundle at once
    (the periodic re-read is set far beyond the test's bound, and the WSGI cap of waiting
    requests is 1: these waiters hold no thread each)."""
    request = submit()
    etag = served_etag()
    port = server(OPA_LONG_POLL_RECHECK_SECONDS="60", OPA_LONG_POLL_MAX_WAITERS="1")
    answers: list[tuple[int, dict[str, str], bytes, float]] = []

    def wait() -> None:
        status, headers, body = get(port, {**AUTH, "If-None-Match": etag, "Prefer": "wait=30"})
        answers.append((status, headers, body, time.monotonic()))

    waiters = [threading.Thread(target=wait) for _ in range(20)]
    for waiter in waiters:
        waiter.start()
    time.sleep(1.0)
    assert not answers  # all still waiting
    approve_request(actor=approver, request=request)
    relay_due()
    published_at = time.monotonic()
    for waiter in waiters:
        waiter.join()
    published = BundlePublication.objects.get(status="published")
    stored = bytes(BundleArtifact.objects.get(revision=published.revision).archive)
    assert len(answers) == 20
    for status, headers, body, answered in answers:
        assert status == 200 and headers["etag"] == f'"{published.revision}"' != etag and body == stored
        assert headers["content-type"] == "application/vnd.openpolicyagent.bundles"
        assert answered - published_at < 2, answered - published_at  # the NOTIFY, not the 60 s re-read


def test_a_move_without_a_notification_is_caught_by_the_re_read(server: Server) -> None:
    """SQLite has no NOTIFY and a PostgreSQL notification can be lost: the watcher's re-read
    of the pointer row wakes the waiter."""
    etag = served_etag()
    port = server(OPA_LONG_POLL_RECHECK_SECONDS="0.2", OPA_LONG_POLL_INTERVAL_SECONDS="0.2")
    mover = move_quietly_later(1.0)
    started = time.monotonic()
    status, headers, body = get(port, {**AUTH, "If-None-Match": etag, "Prefer": "wait=30"})
    elapsed = time.monotonic() - started
    mover.join()
    assert status == 200 and headers["etag"] == '"moved-quietly"' and body == b"x"
    assert 0.9 < elapsed < 5, elapsed


def test_the_whole_portal_under_uvicorn_serves_the_bundle_and_the_pages(server: Server) -> None:
    etag = served_etag()
    port = server("application")
    assert get(port, {**AUTH, "If-None-Match": etag})[0] == 304
    status, _, body = get(port, {}, path="/healthz")
    assert status == 200 and b"ok" in body
    assert get(port, {}, path="/accounts/login/")[0] == 200


def test_a_crowd_of_first_polls_shares_the_reads_and_is_answered(server: Server) -> None:
    """Hundreds of polls that find the revision unknown at once: each waits for a read of the
    pointer begun after it arrived (shared among them), and none spins on a finished one (the
    server once busy-looped on a read whose done callback had not run yet)."""
    etag = served_etag()
    port = server()
    statuses: list[int] = []

    def first_poll() -> None:
        statuses.append(get(port, {**AUTH, "If-None-Match": '"older"', "Prefer": "wait=30"})[0])
        statuses.append(get(port, {**AUTH, "If-None-Match": etag})[0])

    pollers = [threading.Thread(target=first_poll) for _ in range(200)]
    started = time.monotonic()
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join(timeout=30)
    assert sorted(set(statuses)) == [200, 304] and len(statuses) == 400
    assert time.monotonic() - started < 20
