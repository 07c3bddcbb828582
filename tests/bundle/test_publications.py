"""Publishing through the service: database state → git, with records, audit, lock and the worker."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from approvals.services import approve_request
from audit.models import AuditEvent
from bundle.emitters.opa import load_data, shard_of
from bundle.policy_repository import PublishError
from exceptions.models import BundlePublication
from exceptions.selectors import served_bundle
from exceptions.services.grants import revoke_grant
from exceptions.services.publications import current_bundle, publish_bundle
from foundation.outbox.models import OutboxMessage
from foundation.outbox.relay import relay_due
from tests.bundle.test_emitters import TeamFiles, branch_paths, engine


def remote_log(remote: Path) -> list[str]:
    result = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "--format=%s", "main"], capture_output=True, text=True
    )
    return result.stdout.splitlines() if result.returncode == 0 else []


def remote_data(remote: Path) -> dict[str, Any]:
    """The OPA data document as the bundle on the branch builds it."""
    listing = subprocess.run(
        ["git", "--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main", "opa/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    files = {
        path: subprocess.run(["git", "--git-dir", str(remote), "show", f"main:{path}"], capture_output=True).stdout
        for path in listing
        if path.endswith("data.json")
    }
    return load_data(files)


@pytest.mark.django_db
def test_publish_records_the_publication_and_one_audit_event(policy_repo: Path, submit: Any, approver: Any) -> None:
    [grant] = approve_request(actor=approver, request=submit())
    publication = publish_bundle(trigger="test")
    assert (publication.status, publication.grant_count, publication.added) == ("published", 1, 1)
    data = remote_data(policy_repo)
    shard = data["egress"]["shard"][grant.identity]
    assert data["egress"]["grants"][shard][grant.identity]["api.partner.example"][0]["id"] == grant.pk
    [event] = AuditEvent.objects.filter(action="bundle.published")
    assert event.after["commit"] == publication.commit and event.after["added"] == [grant.pk]
    again = publish_bundle(trigger="test")
    assert again.status == "unchanged" and len(remote_log(policy_repo)) == 1
    assert AuditEvent.objects.filter(action="bundle.published").count() == 1


@pytest.mark.django_db
def test_revoked_grant_leaves_the_bundle(policy_repo: Path, submit: Any, approver: Any, security_officer: Any) -> None:
    [grant] = approve_request(actor=approver, request=submit())
    publish_bundle(trigger="approve")
    revoke_grant(actor=security_officer, grant=grant, reason="vendor breached")
    publication = publish_bundle(trigger="revoke")
    assert (publication.added, publication.removed) == (0, 1)
    assert remote_data(policy_repo)["egress"]["grants"] == {}


@pytest.mark.django_db
def test_a_failed_publish_is_recorded_and_the_next_one_carries_everything(
    settings: Any, tmp_path: Path, submit: Any, approver: Any
) -> None:
    missing = tmp_path / "later.git"
    settings.POLICY_REPO_URL = f"file://{missing}"
    settings.POLICY_WORK_DIR = tmp_path / "work"
    approve_request(actor=approver, request=submit())
    with pytest.raises(PublishError):
        publish_bundle(trigger="test")
    failed = BundlePublication.objects.get()
    assert failed.status == "failed" and "later.git" in failed.error
    import git

    git.Repo.init(missing, bare=True, initial_branch="main")
    recovered = publish_bundle(trigger="retry")
    assert recovered.status == "published" and recovered.grant_count == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_publishes_are_serialised_by_the_advisory_lock(
    policy_repo: Path, submit: Any, approver: Any
) -> None:
    approve_request(actor=approver, request=submit())
    statuses: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        try:
            barrier.wait()
            statuses.append(publish_bundle(trigger="race").status)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(statuses) == ["published", "unchanged", "unchanged"]
    assert len(remote_log(policy_repo)) == 1


@pytest.mark.celery_worker
@pytest.mark.redis
@pytest.mark.postgres
def test_approval_reaches_a_pushed_commit_through_the_worker(
    celery_worker: Any, settings: Any, policy_repo: Path, submit: Any, approver: Any
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    settings.OUTBOX_NUDGE = True  # no beat here: the nudge after commit starts the relay
    settings.BUNDLE_PUBLISH_DELAY_SECONDS = 1
    started = time.monotonic()
    [grant] = approve_request(actor=approver, request=submit())
    deadline = started + 30
    published = BundlePublication.objects.filter(status="published")
    # The push lands before the relay records it: wait for both.
    while time.monotonic() < deadline and not (remote_log(policy_repo) and published.exists()):
        time.sleep(0.1)
    assert remote_log(policy_repo), "no commit reached the policy repository within 30 s"
    assert str(grant.pk) in json.dumps(remote_data(policy_repo))
    # The worker records the publication just after its push lands.
    while time.monotonic() < deadline and not BundlePublication.objects.filter(status="published").exists():
        time.sleep(0.05)
    assert BundlePublication.objects.filter(status="published").count() == 1


# --- the OPA bundle service ----------------------------------------------------


@pytest.mark.django_db
def test_bundle_endpoint_requires_the_bearer_token(client: Client) -> None:
    assert client.get("/bundles/egress.tar.gz").status_code == 401
    wrong = client.get("/bundles/egress.tar.gz", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_bundle_endpoint_serves_the_opa_bundle_with_etag_and_304(client: Client, submit: Any, approver: Any) -> None:
    [grant] = approve_request(actor=approver, request=submit())
    auth = {"HTTP_AUTHORIZATION": "Bearer test-bundle-token"}
    response = client.get("/bundles/egress.tar.gz", **auth)
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    revision = current_bundle().revision
    assert response["ETag"] == f'"{revision}"'
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        names = sorted(tar.getnames())
        manifest = json.loads(tar.extractfile("/.manifest").read())  # type: ignore[union-attr]
    shard = shard_of(grant.identity)
    assert names == [
        "/.manifest",
        "/.signatures.json",
        "/data.json",
        f"/egress/grants/{shard}/data.json",
        "/egress/policy.rego",
        "/egress/policy_test.rego",
    ]
    assert manifest["revision"] == revision
    again = client.get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH=f'"{revision}"', **auth)
    assert again.status_code == 304 and again.content == b""
    assert client.get("/bundles/egress.tar.gz", **auth).content == response.content  # deterministic bytes


@pytest.mark.django_db
def test_publications_page_shows_failures(client: Client, requester: Any) -> None:
    BundlePublication.objects.create(status="failed", trigger="schedule", error="remote unreachable")
    client.force_login(requester)
    body = client.get("/bundles/publications/").content.decode()
    assert "remote unreachable" in body and "Failed" in body


@pytest.mark.django_db
def test_grant_changes_rearm_one_publish_row(submit: Any, approver: Any, security_officer: Any, settings: Any) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    request = submit()
    submit(destinations=[{"host": "other.example", "port": 443}])
    assert not OutboxMessage.objects.filter(kind="bundle.publish").exists()  # nothing to publish before a grant
    [grant] = approve_request(actor=approver, request=request)
    row = OutboxMessage.objects.get(kind="bundle.publish")
    assert row.payload == {"trigger": f"request {request.pk} approved"}
    revoke_grant(actor=security_officer, grant=grant, reason="no longer needed")
    again = OutboxMessage.objects.get(kind="bundle.publish")  # still one row: the burst is one publish
    assert again.pk == row.pk and again.revision == row.revision + 1
    assert again.available_at == row.available_at  # a pending publish keeps its earlier due time
    assert again.payload == {"trigger": f"grant {grant.pk} revoked"}


def archive_files(archive: bytes) -> dict[str, bytes]:
    """The files of an OPA bundle archive, by their path in the bundle (``.manifest``, ``data.json``, ...)."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name.lstrip("/"): tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def served_grant_ids(archive: bytes) -> set[int]:
    """The grant ids in an OPA bundle archive's data."""
    files = {f"opa/{name}": data for name, data in archive_files(archive).items()}
    data = load_data(files)["egress"]["grants"]
    return {g["id"] for shard in data.values() for hosts in shard.values() for gs in hosts.values() for g in gs}


@pytest.mark.django_db
def test_an_approval_and_a_revoke_reach_the_endpoint_through_their_publish(
    client: Client, publishing: Path, submit: Any, approver: Any, security_officer: Any
) -> None:
    """The endpoint serves what the last publish stored: a grant change is seen after the publish
    its transaction queued (the outbox relay), not on the next poll."""
    auth = {"HTTP_AUTHORIZATION": "Bearer test-bundle-token"}
    empty = client.get("/bundles/egress.tar.gz", **auth)["ETag"]
    [grant] = approve_request(actor=approver, request=submit())
    assert client.get("/bundles/egress.tar.gz", **auth)["ETag"] == empty  # not published yet
    relay_due()
    granted = client.get("/bundles/egress.tar.gz", **auth)
    published = BundlePublication.objects.get(status="published")
    assert granted["ETag"] == f'"{published.revision}"' != empty
    assert served_grant_ids(granted.content) == {grant.pk}
    revoke_grant(actor=security_officer, grant=grant, reason="done")
    relay_due()
    revoked = client.get("/bundles/egress.tar.gz", **auth)
    assert revoked["ETag"] == empty and served_grant_ids(revoked.content) == set()


@pytest.mark.django_db
def test_the_incremental_read_of_open_grants_equals_a_full_read(submit: Any, approver: Any) -> None:
    from exceptions.selectors import bundle_records
    from exceptions.services.grants import revoke_grant
    from exceptions.services.publications import OpenRecords

    [first] = approve_request(actor=approver, request=submit())
    reader = OpenRecords()
    assert list(reader.read()) == [first.pk]
    [second] = approve_request(
        actor=approver, request=submit(destinations=[{"host": "pypi.org", "port": 443, "protocol": "tcp"}])
    )
    revoke_grant(actor=approver, grant=first, reason="No longer needed.")
    incremental = reader.read()
    assert list(incremental) == [second.pk]
    assert list(incremental.values()) == bundle_records()
    assert list(reader.read(refresh=True).values()) == bundle_records()


@pytest.mark.django_db
def test_a_shortened_or_renamed_grant_reaches_the_next_publish_without_a_refresh(
    policy_repo: Path, submit: Any, approver: Any, security_officer: Any
) -> None:
    """Open grants' rows can change (shortened, rescheduled, a workload renamed): the incremental
    read re-reads every row whose grant, request, workload or team was audited since it last read."""
    from datetime import timedelta

    from django.utils import timezone

    from bundle.records import rfc3339
    from exceptions.models import Workload
    from exceptions.selectors import bundle_records
    from exceptions.services.grants import shorten_grant
    from exceptions.services.publications import OpenRecords

    [grant] = approve_request(actor=approver, request=submit())
    [other] = approve_request(
        actor=approver, request=submit(destinations=[{"host": "pypi.org", "port": 443, "protocol": "tcp"}])
    )
    assert publish_bundle(trigger="test").status == "published"
    served = served_bundle()  # what the bundle endpoint serves
    shortened = shorten_grant(
        actor=security_officer, grant=grant, expires_at=timezone.now() + timedelta(hours=1), reason="Incident."
    )
    assert publish_bundle(trigger="test").status == "published"
    data = remote_data(policy_repo)
    shard = data["egress"]["grants"][data["egress"]["shard"][grant.identity]]
    [entry] = shard[grant.identity]["api.partner.example"]
    assert entry["expires_at"] == rfc3339(shortened.expires_at)
    # The bundle endpoint serves the shortened grant too, and the same bytes as the branch.
    assert served_bundle() != served
    assert served_bundle()[0] == current_bundle().revision
    # The reader itself: a change that is not audited through a service is not seen, an audited one is.
    reader = OpenRecords()
    reader.read()
    Workload.objects.filter(pk=grant.workload_id).update(name="renamed-quietly")
    assert reader.read()[grant.pk].workload != "renamed-quietly"
    shorten_grant(
        actor=security_officer, grant=other, expires_at=timezone.now() + timedelta(hours=2), reason="Incident."
    )
    incremental = reader.read()
    assert incremental[other.pk] == next(r for r in bundle_records() if r.id == other.pk)


@pytest.mark.django_db
def test_an_engine_added_to_the_registry_is_published_and_compiled_by_the_commands(
    policy_repo: Path, submit: Any, approver: Any, tmp_path: Path
) -> None:
    [grant] = approve_request(actor=approver, request=submit())
    path = f"teamfiles/{grant.workload.team.slug}.json"
    with engine(TeamFiles()):
        publication = publish_bundle(trigger="test")
        call_command("compile_bundle", out=tmp_path / "out", stdout=io.StringIO())
    assert publication.status == "published" and path in branch_paths(policy_repo)
    written = json.loads((tmp_path / "out" / path).read_bytes())
    assert written["allow"] == [[grant.identity, "api.partner.example", 443, "tcp"]]
    manifest = json.loads((tmp_path / "out" / "MANIFEST.json").read_bytes())
    assert path in manifest["files"] and "teamfiles" in manifest["skipped"]
    # Removed again: the next publish takes its files off the branch.
    assert publish_bundle(trigger="test").status == "published"
    assert not [p for p in branch_paths(policy_repo) if p.startswith("teamfiles/")]
