"""The exact bundle diffs that approving a pending request now would cause: what the
publish at approval changes, and, for a request that goes live later (a change window,
a freeze, a desired start), what changes when it does. A grant that has not started
enters only the OPA data (with its valid_from); Cilium and Istio carry valid grants only."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from exceptions.bundle.compiler import compile_bundle
from exceptions.bundle.opa import DATA
from exceptions.bundle.records import GrantRecord
from exceptions.models import ExceptionRequest, Grant
from exceptions.selectors import bundle_records
from exceptions.services.publications import bundle_options

IGNORED = {"MANIFEST.json", "opa/.manifest"}  # their only change is the revision


@dataclass(frozen=True)
class FileDiff:
    path: str
    diff: str


def _pretty(path: str, data: bytes | None, identity: str) -> list[str]:
    if data is None:
        return []
    if path == DATA:
        # Only this identity's part can change; diffing the whole document would
        # cost time proportional to every grant in the organisation.
        shard = json.loads(data)["egress"]["shard"].get(identity)
        return (json.dumps({identity: shard}, indent=1, sort_keys=True) + "\n").splitlines(keepends=True)
    if path.startswith("opa/egress/grants/") and path.endswith("/data.json"):
        part = json.loads(data).get(identity, {})
        return (json.dumps({identity: part}, indent=1, sort_keys=True) + "\n").splitlines(keepends=True)
    return data.decode("utf-8").splitlines(keepends=True)


@dataclass(frozen=True)
class ApprovalPreview:
    on_approval: list[FileDiff]
    # Set when the grants start after the approval: the change at that moment.
    go_live: datetime | None = None
    at_go_live: list[FileDiff] = field(default_factory=list)


def _diffs(before: dict[str, bytes], after: dict[str, bytes], identity: str) -> list[FileDiff]:
    diffs = []
    for path in sorted((before.keys() | after.keys()) - IGNORED):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        lines = difflib.unified_diff(
            _pretty(path, old, identity),
            _pretty(path, new, identity),
            fromfile=f"a/{path}" if old else "/dev/null",
            tofile=f"b/{path}" if new else "/dev/null",
            n=2,
        )
        diffs.append(FileDiff(path, "".join(lines)))
    return diffs


def preview_approval(
    request: ExceptionRequest, *, now: datetime | None = None, decided_by: str = "", not_before: datetime | None = None
) -> ApprovalPreview:
    """Compile the bundle as it is and as it would be with this request approved now,
    its grants starting at ``not_before`` (the go-live the approval would set) at the earliest.

    New grant ids are provisional (the next ids the database would hand out).
    """
    now = now or timezone.now()
    current = bundle_records()
    next_id = (Grant.objects.aggregate(top=Max("id"))["top"] or 0) + 1
    valid_from, expires_at = request.grant_window(now, not_before=not_before)
    workload = request.workload
    proposed = [
        GrantRecord(
            id=next_id + i,
            identity=workload.identity,
            host=d.host,
            port=d.port,
            protocol=d.protocol,
            valid_from=valid_from,
            expires_at=expires_at,
            tls_required=d.tls_required,
            request_id=request.pk,
            decided_by=decided_by,
            workload=workload.name,
            namespace=workload.namespace,
            service_account=workload.service_account,
            team=workload.team.slug,
        )
        for i, d in enumerate(request.destinations.all())
    ]

    def compiled(records: list[GrantRecord], at: datetime) -> dict[str, bytes]:
        return compile_bundle(records, now=at, options=bundle_options()).files

    on_approval = _diffs(compiled(current, now), compiled([*current, *proposed], now), workload.identity)
    if valid_from <= now:
        return ApprovalPreview(on_approval=on_approval)
    at_go_live = _diffs(compiled(current, valid_from), compiled([*current, *proposed], valid_from), workload.identity)
    return ApprovalPreview(on_approval=on_approval, go_live=valid_from, at_go_live=at_go_live)
