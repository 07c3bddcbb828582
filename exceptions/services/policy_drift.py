"""Drift on the policy branch: commits the portal did not make, recorded before the publisher restores the
signed state.

The publisher (``publications.publish_bundle``) hands ``PolicyRepository.publish``
the last commit it made or examined; whenever the git side fetches the branch,
what changed since then reaches ``record_drift`` before anything is pushed.
Audit checkpoints the portal signed (``audit/checkpoints/``, pushed by
``audit.checkpoint_git``) are the portal's own and are not drift.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from django.db import transaction

from audit.checkpoint_git import CHECKPOINT_DIR
from audit.checkpoints import InvalidCheckpoint, parse_checkpoint
from audit.models import AuditCheckpoint
from audit.services import SYSTEM, record_event
from bundle.policy_repository import Drift
from exceptions.events import emit
from exceptions.models import BundlePublication, PolicyDrift

DRIFT_EVENT = "policy.drift_detected"


def portal_checkpoint(path: str, data: bytes) -> bool:
    """Whether an added file is an audit checkpoint the portal signed (not someone else's commit)."""
    if not path.startswith(CHECKPOINT_DIR + "/"):
        return False
    try:
        document = json.loads(data)
        if not isinstance(document, dict):
            return False
        parse_checkpoint(document, path=path)
    except (ValueError, InvalidCheckpoint):
        return False
    return True


def last_known_commit() -> str:
    """The branch commit the publisher last made, found unchanged, or recorded as drift."""
    publication = BundlePublication.objects.exclude(commit="").order_by("-created_at", "-id").first()
    drift = PolicyDrift.objects.order_by("-detected_at", "-id").first()
    if drift is not None and (publication is None or drift.detected_at >= publication.created_at):
        return drift.head_commit
    return publication.commit if publication is not None else ""


def portal_heads() -> list[str]:
    """The newest commits the portal's writers pushed to the branch (a publication, an audit checkpoint).

    Shared by every worker: one it has never fetched means the branch moved since its own last push.
    """
    publication = BundlePublication.objects.exclude(commit="").order_by("-created_at", "-id").first()
    checkpoint = AuditCheckpoint.objects.exclude(commit="").order_by("-seq").first()
    return [row.commit for row in (publication, checkpoint) if row is not None]


def record_drift(*, drift: Drift) -> PolicyDrift | None:
    """One PolicyDrift row, its audit event and its ``policy.drift_detected`` webhook, in one transaction.

    None when this drift (same last commit, same head) was recorded already:
    a publish that failed after recording it finds it again on its retry.
    """
    paths = [asdict(path) for path in drift.paths]
    commits = [asdict(commit) for commit in drift.commits]
    with transaction.atomic():
        row, created = PolicyDrift.objects.get_or_create(
            since_commit=drift.since,
            head_commit=drift.head,
            defaults={"paths": paths, "commits": commits, "rewritten": drift.rewritten},
        )
        if not created:
            return None
        restored = [p["path"] for p in paths if p["restored"]]
        record_event(
            actor=SYSTEM,
            action=DRIFT_EVENT,
            obj=row,
            after={
                "since": drift.since,
                "head": drift.head,
                "paths": paths,
                "commits": commits,
                "rewritten": drift.rewritten,
            },
            reason=(
                f"{len(paths)} path(s) changed on the policy branch by commits the portal did not make; "
                f"{len(restored)} restored to the signed state by this publish"
                + ("; the branch's history was rewritten" if drift.rewritten else "")
            ),
        )
        emit(
            DRIFT_EVENT,
            occurrences=[
                (
                    f"drift:{row.pk}",
                    {
                        "drift": {
                            "id": row.pk,
                            "since": drift.since,
                            "head": drift.head,
                            "paths": paths,
                            "commits": commits,
                            "rewritten": drift.rewritten,
                            "detected_at": row.detected_at.isoformat(),
                        }
                    },
                )
            ],
        )
    return row
