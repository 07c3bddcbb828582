"""The OPA bundle endpoint serves the archive the last publish stored: nothing compiled per poll."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from approvals.services import approve_request
from audit.models import AuditEvent
from bundle.policy_repository import PublishError
from exceptions.bundle_views import forget_archives
from exceptions.models import BundleArtifact, BundlePublication, Grant, ServedBundle
from exceptions.services.grants import revoke_grant
from exceptions.services.publications import forget_open_records, publish_bundle
from foundation.outbox.relay import relay_due
from tests.bundle.test_publications import archive_files, served_grant_ids

AUTH = {"HTTP_AUTHORIZATION": "Bearer test-bundle-token"}
ROOT = Path(__file__).resolve().parents[2]
GRANT_TABLE = Grant._meta.db_table


def poll(client: Client, **headers: str) -> Any:
    return client.get("/bundles/egress.tar.gz", **AUTH, **headers)


def no_grant_read(queries: CaptureQueriesContext) -> bool:
    return not [q["sql"] for q in queries.captured_queries if GRANT_TABLE in q["sql"]]


@pytest.mark.django_db
def test_a_304_reads_the_pointer_row_and_no_grant(client: Client, publishing: Path, submit: Any, approver: Any) -> None:
    approve_request(actor=approver, request=submit())
    relay_due()
    etag = poll(client)["ETag"]
    with CaptureQueriesContext(connection) as queries:
        response = poll(client, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304 and response["ETag"] == etag
    assert len(queries) == 1 and no_grant_read(queries), [q["sql"] for q in queries.captured_queries]
    assert ServedBundle._meta.db_table in queries[0]["sql"]


@pytest.mark.django_db
def test_a_200_serves_the_bytes_the_publish_stored(
    client: Client, publishing: Path, submit: Any, approver: Any
) -> None:
    approve_request(actor=approver, request=submit())
    relay_due()
    publication = BundlePublication.objects.get(status="published")
    artifact = BundleArtifact.objects.get(revision=publication.revision)
    with CaptureQueriesContext(connection) as cold:
        response = poll(client, HTTP_IF_NONE_MATCH='"an-older-revision"')
    assert response.status_code == 200 and response["ETag"] == f'"{publication.revision}"'
    assert response.content == bytes(artifact.archive) and response["Content-Length"] == str(artifact.size)
    assert hashlib.sha256(response.content).hexdigest() == artifact.sha256 and artifact.size == len(response.content)
    assert json.loads(archive_files(response.content)[".manifest"])["revision"] == publication.revision
    # The pointer, then the bytes once; later 200s in this process read the pointer only.
    assert len(cold) == 2 and no_grant_read(cold)
    with CaptureQueriesContext(connection) as warm:
        assert poll(client).content == response.content
    assert len(warm) == 1 and no_grant_read(warm)


@pytest.mark.django_db
def test_a_process_with_nothing_in_memory_answers_without_compiling(
    client: Client, publishing: Path, submit: Any, approver: Any
) -> None:
    [grant] = approve_request(actor=approver, request=submit())
    relay_due()
    [artifact] = BundleArtifact.objects.all()  # what the publish stored
    forget_open_records()  # the module state a new web process starts without
    forget_archives()
    with CaptureQueriesContext(connection) as queries:
        response = poll(client)
    assert response.status_code == 200 and response.content == bytes(artifact.archive)
    assert served_grant_ids(response.content) == {grant.pk}
    assert len(queries) == 2 and no_grant_read(queries)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_process_serves_the_stored_archive_without_reading_a_grant(
    publishing: Path, submit: Any, approver: Any
) -> None:
    """Another Python process on the same database: its first poll reads the pointer and the bytes."""
    approve_request(actor=approver, request=submit())
    relay_due()
    artifact = ServedBundle.objects.get().artifact
    db = django_settings.DATABASES["default"]
    script = """
import hashlib, json, django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
with CaptureQueriesContext(connection) as queries:
    response = Client(HTTP_HOST="localhost").get(
        "/bundles/egress.tar.gz", HTTP_AUTHORIZATION="Bearer test-bundle-token"
    )
print(json.dumps({"status": response.status_code, "etag": response["ETag"],
    "sha256": hashlib.sha256(response.content).hexdigest(),
    "queries": [q["sql"] for q in queries.captured_queries]}))
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert (answer["status"], answer["etag"], answer["sha256"]) == (200, f'"{artifact.revision}"', artifact.sha256)
    assert len(answer["queries"]) == 2 and not [q for q in answer["queries"] if GRANT_TABLE in q]


@pytest.mark.django_db
def test_before_the_first_publish_the_first_poll_compiles_once_and_stores_it(
    client: Client, submit: Any, approver: Any
) -> None:
    [grant] = approve_request(actor=approver, request=submit())
    assert not ServedBundle.objects.exists()
    first = poll(client)
    [artifact] = BundleArtifact.objects.all()
    assert first.status_code == 200 and first.content == bytes(artifact.archive)
    assert served_grant_ids(first.content) == {grant.pk}
    forget_archives()
    with CaptureQueriesContext(connection) as queries:
        again = poll(client)
    assert again.content == first.content and no_grant_read(queries)
    assert BundleArtifact.objects.count() == 1


@pytest.mark.django_db
def test_the_endpoint_serves_a_publish_whose_git_push_failed(
    client: Client, settings: Any, tmp_path: Path, submit: Any, approver: Any
) -> None:
    """Engines follow the database, not the git remote's health."""
    settings.POLICY_REPO_URL = f"file://{tmp_path / 'unreachable.git'}"
    settings.POLICY_WORK_DIR = tmp_path / "work"
    [grant] = approve_request(actor=approver, request=submit())
    with pytest.raises(PublishError):
        publish_bundle(trigger="test")
    failed = BundlePublication.objects.get(status="failed")
    response = poll(client)
    assert response["ETag"] == f'"{failed.revision}"' and served_grant_ids(response.content) == {grant.pk}


@pytest.mark.django_db
def test_each_move_of_the_served_revision_is_audited_once_and_old_archives_are_pruned(
    client: Client, publishing: Path, settings: Any, submit: Any, approver: Any, security_officer: Any
) -> None:
    settings.OPA_BUNDLE_ARTIFACTS_KEPT = 2
    grants = []
    for n in range(3):
        [grant] = approve_request(
            actor=approver, request=submit(destinations=[{"host": f"api{n}.partner.example", "port": 443}])
        )
        grants.append(grant)
        relay_due()
    assert publish_bundle(trigger="nothing changed").status == "unchanged"
    events = list(AuditEvent.objects.filter(action="bundle.served").order_by("seq"))
    revisions = list(
        BundlePublication.objects.filter(status="published").order_by("id").values_list("revision", flat=True)
    )
    assert [e.after["revision"] for e in events] == revisions and len(revisions) == 3
    assert [e.before for e in events] == [None, {"revision": revisions[0]}, {"revision": revisions[1]}]
    assert set(BundleArtifact.objects.values_list("revision", flat=True)) == set(revisions[1:])
    # Back to an earlier state: its revision is stored again, and served.
    revoke_grant(actor=security_officer, grant=grants[2], reason="done")
    relay_due()
    assert poll(client)["ETag"] == f'"{revisions[1]}"'
    assert ServedBundle.objects.get().revision == revisions[1]


@pytest.mark.django_db
def test_a_poll_skips_the_page_middleware_but_not_the_security_middleware(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """OpaBundleMiddleware answers polls right after SecurityMiddleware: no request id, session or request log
    (the page middleware it skips), but the HTTPS redirect still applies."""
    caplog.set_level(logging.INFO)
    response = poll(client)
    assert response.status_code == 200 and "X-Request-ID" not in response and "Set-Cookie" not in response
    assert not [r for r in caplog.records if r.name.startswith("django_structlog")]
    assert "X-Request-ID" in client.get("/healthz")  # a page still passes through them
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/bundles/egress.tar.gz", **AUTH).status_code == 301
