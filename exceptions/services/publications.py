"""Publishing the policy bundle: compile the current state, commit it to git, record the attempt.

One publisher at a time (a PostgreSQL advisory lock, or a file lock on the
embedded SQLite setup). Grant changes ask for a publish with an outbox row
(``exceptions.services.publishes.queue_publish``) that the relay delivers
through ``exceptions.delivery.deliver_publish``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from audit.checkpoints import queue_checkpoint
from audit.selectors import head_seq
from audit.services import SYSTEM, record_event
from bundle import signatures, tree_signature
from bundle.compiler import Bundle, compile_bundle
from bundle.emitters import opa
from bundle.incremental import IncrementalCompiler
from bundle.policy_repository import Drift, PolicyRepository, PublishError, PublishResult
from bundle.records import GrantRecord
from exceptions import hooks
from exceptions.events import emit
from exceptions.models import BundlePublication
from exceptions.selectors import (
    bundle_options,
    bundle_records,
    latest_provider_ranges,
    open_grant_ids,
    open_grants_changed_since,
    served_bundle,
    service_cidrs,
)
from exceptions.services.artifacts import store_artifact
from exceptions.services.policy_drift import last_known_commit, portal_checkpoint, portal_heads, record_drift
from foundation.locks import named_lock
from foundation.logging import log_publication
from foundation.signing import sign_jws

logger = logging.getLogger(__name__)


# This process's last compile, per group: the next publish renders only what changed.
# Used under the publisher lock only (one compile at a time).
_COMPILER = IncrementalCompiler()


SIGNATURE_KEY = "egress-portal:bundle-signature:"


def _signer(claims: dict[str, Any]) -> str:
    """Sign once per content: every process serves (and the branch keeps) the same bytes.

    ES256 signatures are randomised, so signing the same files twice would
    give a new .signatures.json, a new commit and a new ETag each time.
    """
    key = SIGNATURE_KEY + hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).hexdigest()
    token = cache.get(key)
    if token is None:
        token = sign_jws(claims)
        cache.set(key, token, timeout=None)
    return str(token)


def sign_bundle(bundle: Bundle, *, tree: bool = True) -> Bundle:
    """The bundle signed with EGRESS_SIGNING_KEY (if one is set): ``opa/.signatures.json`` for
    OPA's loader, then (``tree``) ``MANIFEST.sig`` over every file, the OPA signature included."""
    if not settings.EGRESS_SIGNING_KEY:
        return bundle
    bundle = bundle.with_files(
        {
            f"{opa.DIRECTORY}/{signatures.SIGNATURES}": signatures.sign(
                bundle.files_under(opa.DIRECTORY), _signer, compact=True
            )
        }
    )
    return tree_signature.sign(bundle, _signer) if tree else bundle


class OpenRecords:
    """This process's last read of the open grants, by id.

    A publish reads the open grants' ids, the rows it has not seen, and the rows
    whose grant, request, workload or team has an audit event since its last read
    (a window rescheduled or shortened, a workload renamed: every such change is
    audited in its transaction). A provider-service grant gets the CIDRs of the
    newest range file on every read. The refreshing safety net reads everything
    again (a renamed person, who is not audited, is picked up there).
    """

    def __init__(self) -> None:
        self.by_id: dict[int, GrantRecord] = {}
        self.seq = 0

    def read(self, *, refresh: bool = False) -> dict[int, GrantRecord]:
        """The open grants by id."""
        # Read before any row: a change committed after it has a later number and is read next time.
        seq = head_seq()
        # A chain that went backwards (a restored database) says nothing about what changed.
        stale = refresh or not self.by_id or seq < self.seq
        changed = None if stale else open_grants_changed_since(self.seq)
        if changed is None:
            self.by_id = {record.id: record for record in bundle_records()}
            self.seq = seq
            return self.by_id
        ids = open_grant_ids()
        seen = {i: record for i, record in self.by_id.items() if i not in changed} if changed else self.by_id
        missing = [i for i in ids if i not in seen]
        fresh = {record.id: record for record in bundle_records(ids=missing)} if missing else {}
        if len(ids) == len(seen) + len(missing):
            # Nothing closed (the usual approval): the grants seen, and the new ones.
            self.by_id = {**seen, **fresh}
        else:
            self.by_id = {i: record for i in ids if (record := seen.get(i) or fresh.get(i)) is not None}
        self.seq = seq
        if any(record.service for record in self.by_id.values()):
            ranges = latest_provider_ranges()
            for i, record in self.by_id.items():
                if record.service:
                    self.by_id[i] = replace(record, cidrs=service_cidrs(record.service, ranges))
        return self.by_id


_OPEN_RECORDS = OpenRecords()


def current_bundle(
    *,
    now: datetime | None = None,
    compiler: IncrementalCompiler | None = None,
    records: Mapping[int, GrantRecord] | None = None,
    refresh: bool = False,
) -> Bundle:
    """The signed bundle of the open grants; with ``compiler``, compiled from what changed since its last compile.

    ``refresh`` makes the compiler start from nothing (the scheduled safety net).
    """
    records = {record.id: record for record in bundle_records()} if records is None else records
    now, options = now or timezone.now(), bundle_options()
    if compiler is None:
        bundle = compile_bundle(records.values(), now=now, options=options)
    else:
        bundle = compiler.compile(records, now=now, options=options, full=refresh)
    return sign_bundle(bundle)


def forget_open_records() -> None:
    """Drop this process's read of the open grants (the next publish reads everything)."""
    _OPEN_RECORDS.by_id = {}


def publisher() -> PolicyRepository:
    return PolicyRepository(
        url=settings.POLICY_REPO_URL,
        work_dir=Path(settings.POLICY_WORK_DIR),
        branch=settings.POLICY_REPO_BRANCH,
        subdir=settings.POLICY_REPO_SUBDIR,
        author=(settings.POLICY_GIT_AUTHOR_NAME, settings.POLICY_GIT_AUTHOR_EMAIL),
        username=settings.POLICY_REPO_USERNAME,
        password=settings.POLICY_REPO_PASSWORD,
    )


def _record_drift(drift: Drift) -> None:
    record_drift(drift=drift)


@contextmanager
def publisher_lock() -> Iterator[None]:
    """Only one publisher at a time, across processes and machines sharing the database."""
    with named_lock("publish-bundle"):
        yield


def ensure_served_bundle() -> tuple[str, str]:
    """The served revision and SHA-256; before the first publish, the bundle compiled once and stored.

    Only a fresh install (no publish yet) compiles here, once, under the publisher
    lock; every later poll reads what a publish stored.
    """
    served = served_bundle()
    if served is None:
        with publisher_lock():
            if served_bundle() is None:  # another process may have stored it while this one waited
                store_artifact(bundle=current_bundle(), trigger="first bundle poll")
        served = served_bundle()
    if served is None:  # pragma: no cover - stored just above, in this process's view
        raise RuntimeError("no served bundle after storing one")
    return served


def publish_bundle(*, trigger: str, refresh: bool = False) -> BundlePublication:
    """Publish the whole current state; every attempt leaves a BundlePublication row.

    A failure loses nothing: the next publish carries the complete state again.
    Raises PublishError (after recording it) so a task can retry with backoff.
    """
    started = time.monotonic()
    with publisher_lock():
        bundle = current_bundle(compiler=_COMPILER, records=_OPEN_RECORDS.read(refresh=refresh), refresh=refresh)
        # What OPA agents poll: stored before the push, so a git remote that is down never stales it.
        store_artifact(bundle=bundle, trigger=trigger)
        try:
            result: PublishResult = publisher().publish(
                bundle,
                trigger=trigger,
                refresh=refresh,
                signer=_signer if settings.EGRESS_SIGNING_KEY else None,
                # Commits the portal did not make are recorded (audit, webhook) before the push restores them.
                since=last_known_commit(),
                on_drift=_record_drift,
                own=portal_checkpoint,
                # Another worker's publish, or an audit checkpoint, makes this process fetch first.
                heads=portal_heads(),
            )
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
                emit(
                    "bundle.published",
                    occurrences=[
                        (
                            f"publication:{publication.pk}",
                            {
                                "publication": {
                                    "id": publication.pk,
                                    "revision": result.revision,
                                    "commit": result.commit,
                                    "grant_count": bundle.grant_count,
                                    "added": len(result.added),
                                    "removed": len(result.removed),
                                }
                            },
                        )
                    ],
                )
                # The history of heads follows the bundle (one checkpoint for a burst of publishes).
                queue_checkpoint(reason=f"publication {publication.pk}")
                # An observer hook: the pushed commit's row, audit event and webhook are never rolled
                # back by a metric (the next publish would say unchanged and never audit it).
                hooks.publication_pushed(
                    result.revision, publication.created_at, [grant.request_id for grant in result.added]
                )
        log_publication(publication)
    return publication
