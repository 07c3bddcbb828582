"""Publishing the policy bundle: compile the current state, commit it to git, record the attempt.

One publisher at a time (a PostgreSQL advisory lock, or a file lock on the
embedded SQLite setup). Grant changes ask for a publish with an outbox row
(``exceptions.services.publishes.queue_publish``) that the relay delivers
through ``exceptions.delivery.deliver_publish``.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from audit.services import SYSTEM, record_event
from egress_portal.logging import log_publication
from exceptions.bundle.archive import opa_tarball
from exceptions.bundle.compiler import Bundle, compile_bundle
from exceptions.bundle.publisher import GitPublisher, PublishError, PublishResult
from exceptions.bundle.records import BundleOptions, GrantRecord
from exceptions.models import BundlePublication
from exceptions.selectors import bundle_records

LOCK_KEY = zlib.crc32(b"egress-portal:publish-bundle")


def bundle_options() -> BundleOptions:
    return BundleOptions(istio_namespace=settings.ISTIO_NAMESPACE)


def current_bundle(*, now: datetime | None = None) -> Bundle:
    return compile_bundle(bundle_records(), now=now or timezone.now(), options=bundle_options())


def content_revision(records: list[GrantRecord], *, now: datetime) -> str:
    """A digest of everything the compiled bundle depends on at ``now``.

    The open grants' contents (a record's repr names every field, so a field added
    to GrantRecord joins the key) plus which of them are already valid (Cilium and
    Istio carry only those). Two states with the same digest compile to the same
    bytes, whatever ids a database reuses after a rollback.
    """
    lines = [repr(bundle_options())]
    lines += [f"{record!r} {record.valid_from <= now}" for record in records if record.expires_at > now]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def opa_archive(*, now: datetime | None = None) -> tuple[str, bytes]:
    """The OPA bundle as (revision, tar.gz), compiled only when its content changed.

    Many OPA agents poll the same portal: reading the open grants is cheap,
    compiling and compressing them is not, so the archive is cached under the
    content revision of the grants it is compiled from.
    """
    now = now or timezone.now()
    records = bundle_records()
    key = f"egress-portal:opa-archive:{content_revision(records, now=now)}"
    cached = cache.get(key)
    if cached is None:
        bundle = compile_bundle(records, now=now, options=bundle_options())
        cached = (bundle.revision, opa_tarball(bundle.opa_files()))
        cache.set(key, cached, timeout=3600)
    return cached


def publisher() -> GitPublisher:
    return GitPublisher(
        url=settings.POLICY_REPO_URL,
        work_dir=Path(settings.POLICY_WORK_DIR),
        branch=settings.POLICY_REPO_BRANCH,
        subdir=settings.POLICY_REPO_SUBDIR,
        author=(settings.POLICY_GIT_AUTHOR_NAME, settings.POLICY_GIT_AUTHOR_EMAIL),
        username=settings.POLICY_REPO_USERNAME,
        password=settings.POLICY_REPO_PASSWORD,
    )


@contextmanager
def publisher_lock() -> Iterator[None]:
    """Only one publisher at a time, across processes and machines sharing the database."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
            try:
                yield
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        return
    lock_path = Path(settings.VAR_DIR) / "publish.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish_bundle(*, trigger: str, refresh: bool = False) -> BundlePublication:
    """Publish the whole current state; every attempt leaves a BundlePublication row.

    A failure loses nothing: the next publish carries the complete state again.
    Raises PublishError (after recording it) so a task can retry with backoff.
    """
    started = time.monotonic()
    with publisher_lock():
        bundle = current_bundle()
        try:
            result: PublishResult = publisher().publish(bundle, trigger=trigger, refresh=refresh)
        except PublishError as exc:
            failed = BundlePublication.objects.create(
                status=BundlePublication.Status.FAILED,
                revision=bundle.revision,
                trigger=trigger,
                grant_count=bundle.grant_count,
                duration_ms=int((time.monotonic() - started) * 1000),
                error=str(exc)[:4000],
            )
            log_publication(failed)
            raise
        with transaction.atomic():
            publication = BundlePublication.objects.create(
                status=result.status,
                revision=result.revision,
                commit=result.commit,
                trigger=trigger,
                grant_count=bundle.grant_count,
                added=len(result.added),
                removed=len(result.removed),
                attempts=result.attempts,
                duration_ms=int((time.monotonic() - started) * 1000),
            )
            if result.status == BundlePublication.Status.PUBLISHED:
                record_event(
                    actor=SYSTEM,
                    action="bundle.published",
                    obj=publication,
                    after={
                        "revision": result.revision,
                        "commit": result.commit,
                        "added": [g.id for g in result.added],
                        "removed": [g.id for g in result.removed],
                    },
                    reason=trigger,
                )
        log_publication(publication)
    return publication
