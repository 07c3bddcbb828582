"""The OPA bundle archive engines poll: stored once per revision by the publish that compiled it.

A publish stores its archive (tar.gz with ``.signatures.json``) right after
compiling, before its git push, and moves the one ``ServedBundle`` row to it in
the same transaction; on PostgreSQL a ``NOTIFY`` in that transaction wakes the
long polls of every web process when it commits. The bundle endpoint serves
these bytes: no web process compiles, hashes or reads a grant per poll, and
the endpoint does not depend on the git remote being reachable.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import connection, transaction

from audit.services import SYSTEM, record_event
from bundle.archive import opa_tarball
from bundle.compiler import Bundle
from bundle.emitters import opa
from exceptions.models import BUNDLE_SERVED_ACTION, BundleArtifact, ServedBundle
from exceptions.selectors import served_bundle

# PostgreSQL NOTIFY channel: the payload is the revision now served.
SERVED_CHANNEL = "egress_bundle_served"


def store_artifact(*, bundle: Bundle, trigger: str) -> str:
    """Serve ``bundle``'s OPA archive from now on; returns its revision.

    Nothing is written (or compressed) when that revision is served already,
    the usual case of a publish with nothing changed. A revision stored before
    (a revoke that restores an earlier state) keeps its first bytes, so an
    engine holding them keeps a valid ETag. The caller holds the publisher lock.
    """
    served = served_bundle()
    if served is not None and served[0] == bundle.revision:
        return bundle.revision
    archive = opa_tarball(bundle.files_under(opa.DIRECTORY))
    with transaction.atomic():
        artifact, _ = BundleArtifact.objects.get_or_create(
            revision=bundle.revision,
            defaults={"archive": archive, "sha256": hashlib.sha256(archive).hexdigest(), "size": len(archive)},
        )
        ServedBundle.objects.update_or_create(
            pk=ServedBundle.ONE,
            defaults={"artifact": artifact, "revision": artifact.revision, "sha256": artifact.sha256},
        )
        record_event(
            actor=SYSTEM,
            action=BUNDLE_SERVED_ACTION,
            obj=artifact,
            before={"revision": served[0]} if served is not None else None,
            after={"revision": artifact.revision, "sha256": artifact.sha256, "size": artifact.size},
            reason=trigger,
        )
        _prune(served=artifact.pk)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [SERVED_CHANNEL, artifact.revision])
    return artifact.revision


def _prune(*, served: int) -> None:
    """Keep the served artifact and the ``OPA_BUNDLE_ARTIFACTS_KEPT`` - 1 newest others.

    A few stay so a poll that read the pointer just before it moved still finds its bytes.
    """
    older = BundleArtifact.objects.exclude(pk=served).order_by("-id").values_list("pk", flat=True)
    stale = list(older[max(settings.OPA_BUNDLE_ARTIFACTS_KEPT - 1, 0) :])
    if stale:
        # only("pk"): deleting must not read the archives it deletes.
        BundleArtifact.objects.filter(pk__in=stale).only("pk").delete()
