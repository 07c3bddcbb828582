"""Time to policy update as a Prometheus histogram (the only writer of its rows).

Each approval is observed once per stage, in the transaction of the state change that
completes the stage: the publish whose pushed commit first carries its grants (``pushed``),
and the ingestion that receives the first decision an engine made with that bundle
revision or a later one (``engine``). A PolicyUpdate row per approval makes both
observations idempotent, so a re-publish, a retried batch or two concurrent batches add
nothing; the bucket counters only grow, across scrapes and restarts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Max

from exceptions.models import BundlePublication, ExceptionRequest
from foundation.upserts import add_to_rows
from outcomes.models import PolicyUpdate, PolicyUpdateBucket, PolicyUpdateStage
from outcomes.selectors import APPROVED_STATUSES
from traffic.models import BundleRevisionSeen

# Seconds: 5 s, 15 s, 30 s, 1 min, 2 min, 5 min, 10 min, 30 min, 1 h, 4 h, 1 day.
POLICY_UPDATE_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 86400)
# An approval is looked for only this long after it was decided (pushed) or pushed (engine):
# it keeps each step an index range, and a later observation would be about an outage, not it.
HORIZON = timedelta(days=30)
# Ids per statement: well under the 999 values SQLite before 3.32 binds at most.
CHUNK = 500


def _hold_revisions(revisions: Iterable[str]) -> None:
    """Lock the revisions until the transaction ends (PostgreSQL; SQLite has one writer at a time).

    A publish inserts its BundlePublication and then reads BundleRevisionSeen; ingestion inserts
    BundleRevisionSeen and then reads BundlePublication. Under READ COMMITTED two such
    transactions at once would each miss the other's row; each takes this lock between its
    insert and its read, so whichever comes second reads after the first has committed."""
    if connection.vendor != "postgresql":
        return
    keys = [
        int.from_bytes(
            hashlib.blake2b(f"egress-portal:revision:{r}".encode(), digest_size=8).digest(), "big", signed=True
        )
        for r in sorted(set(revisions))
    ]
    with connection.cursor() as cursor:
        for key in keys:  # in a fixed order: two batches sharing revisions cannot deadlock
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _le(seconds: float) -> str:
    for bound in POLICY_UPDATE_BUCKETS:
        if seconds <= bound:
            return str(float(bound))
    return "+Inf"


def _count(stage: PolicyUpdateStage, observed: Iterable[float]) -> None:
    """Add the observations to the stage's buckets (one upsert, rows in a fixed order so two
    writers lock them in the same order)."""
    buckets: dict[str, list[float]] = {}
    for seconds in observed:
        entry = buckets.setdefault(_le(seconds), [0, 0.0])
        entry[0] += 1
        entry[1] += seconds
    if not buckets:
        return
    add_to_rows(
        PolicyUpdateBucket._meta.db_table,
        ["stage", "le"],
        [("stage", "varchar"), ("le", "varchar"), ("count", "bigint"), ("total_seconds", "double precision")],
        [(stage.value, le, int(n), total) for le, (n, total) in buckets.items()],
        add=["count", "total_seconds"],
    )


def _engine_seconds(decided_at: datetime, seen: datetime) -> float:
    # Never negative: callers pass only approvals decided by ``seen`` (the clamp is a guard).
    return max((seen - decided_at).total_seconds(), 0.0)


def _observe_engine(*, pushed_until: datetime, seen: datetime, decided_by: datetime) -> list[float]:
    """Mark the approvals decided by ``decided_by``, pushed by ``pushed_until`` and not yet seen
    in an engine as seen at ``seen``; returns their waits."""
    waiting = PolicyUpdate.objects.select_for_update().filter(
        engine_at__isnull=True, pushed_at__lte=pushed_until, pushed_at__gte=seen - HORIZON, decided_at__lte=decided_by
    )
    # Locked in key order, and a row another batch observed meanwhile drops out of the
    # re-checked condition: each approval is counted once whatever runs beside this.
    due = list(waiting.order_by("pk").values_list("pk", "decided_at"))
    for start in range(0, len(due), CHUNK):
        PolicyUpdate.objects.filter(pk__in=[pk for pk, _ in due[start : start + CHUNK]]).update(engine_at=seen)
    return [_engine_seconds(decided_at, seen) for _, decided_at in due]


def _insert_new(decided: dict[int, datetime], pushed_at: datetime) -> list[int]:
    """Insert a PolicyUpdate for each approval that has none; returns those inserted."""
    rows = sorted(decided.items())
    if connection.vendor != "postgresql":
        # SQLite has one writer at a time, so looking first cannot race, and it needs no
        # RETURNING (SQLite 3.35; Django 5.2 supports 3.31).
        known = set(PolicyUpdate.objects.filter(pk__in=list(decided)).values_list("pk", flat=True))
        fresh = [PolicyUpdate(request_id=pk, decided_at=at, pushed_at=pushed_at) for pk, at in rows if pk not in known]
        PolicyUpdate.objects.bulk_create(fresh)
        return [row.request_id for row in fresh]
    adapt = connection.ops.adapt_datetimefield_value
    table = PolicyUpdate._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" ("request_id", "decided_at", "pushed_at") '  # noqa: S608 - fixed table name
            f"VALUES {', '.join(['(%s, %s, %s)'] * len(rows))} "
            'ON CONFLICT ("request_id") DO NOTHING RETURNING "request_id"',
            [value for pk, at in rows for value in (pk, adapt(at), adapt(pushed_at))],
        )
        return [pk for (pk,) in cursor.fetchall()]


def observe_pushed(*, revision: str, pushed_at: datetime, request_ids: Iterable[int]) -> int:
    """The publish that pushed a commit calls this in its transaction with the requests of the
    grants that commit carries and the previous one did not (``PublishResult.added``): their
    approvals are observed (pushed). Returns how many.

    The publisher's own difference, not a time filter: an approval that took its time before a
    publish began but committed after that publish read the grants is in the next commit's
    difference, whatever its times say."""
    horizon = pushed_at - HORIZON
    ids = sorted({pk for pk in request_ids if pk})
    new: dict[int, datetime] = {}
    for start in range(0, len(ids), CHUNK):
        decided: dict[int, datetime] = {
            pk: at
            for pk, at in ExceptionRequest.objects.filter(
                pk__in=ids[start : start + CHUNK], status__in=APPROVED_STATUSES, decided_at__gte=horizon
            ).values_list("pk", "decided_at")
            if at is not None
        }
        if not decided:
            continue
        new.update((pk, decided[pk]) for pk in _insert_new(decided, pushed_at))
    _count(PolicyUpdateStage.PUSHED, [max((pushed_at - at).total_seconds(), 0.0) for at in new.values()])
    # An engine may have run these very bytes before the commit (fetched from the portal's
    # bundle endpoint): its first decision with them ends the wait of every approval they carry.
    # A decision older than an approval was made with an identical older bundle, not with it.
    _hold_revisions([revision])
    seen = BundleRevisionSeen.objects.filter(revision=revision).values_list("first_seen", flat=True).first()
    if seen is not None:
        _count(PolicyUpdateStage.ENGINE, _observe_engine(pushed_until=pushed_at, seen=seen, decided_by=seen))
    return len(new)


def observe_engine(*, first_seen: dict[str, datetime]) -> int:
    """Ingestion calls this in its transaction with the bundle revisions an engine reported for
    the first time and the time of that decision: every approval pushed with that revision or
    before it and not yet seen in an engine is observed (engine). Returns how many."""
    if not first_seen:
        return 0
    _hold_revisions(first_seen)
    published = dict(
        BundlePublication.objects.filter(status=BundlePublication.Status.PUBLISHED, revision__in=list(first_seen))
        .values_list("revision")
        .annotate(last=Max("created_at"))
        .order_by()
    )
    observed: list[float] = []
    # Earliest decision first: an approval carried by several of these revisions ends at the earliest.
    for revision, seen in sorted(first_seen.items(), key=lambda item: (item[1], item[0])):
        pushed = published.get(revision)
        if pushed is None:
            # Not (yet) committed by this portal: the publish that commits it looks here instead.
            continue
        # A decision older than an approval was made with an identical older bundle (or by a
        # clock behind the portal's), not with it: the approval keeps waiting.
        observed += _observe_engine(pushed_until=pushed, seen=seen, decided_by=seen)
    _count(PolicyUpdateStage.ENGINE, observed)
    return len(observed)


def policy_update_buckets() -> dict[str, tuple[list[tuple[str, int]], float]]:
    """Per stage: cumulative (le, count) buckets ending with +Inf, and the sum in seconds (one
    query over a few dozen rows, whatever the number of approvals)."""
    rows = list(PolicyUpdateBucket.objects.values_list("stage", "le", "count", "total_seconds"))
    result: dict[str, tuple[list[tuple[str, int]], float]] = {}
    for stage in PolicyUpdateStage.values:
        mine = [(float(le), count, total) for s, le, count, total in rows if s == stage]
        buckets = [
            (str(float(bound)), sum(count for le, count, _ in mine if le <= bound)) for bound in POLICY_UPDATE_BUCKETS
        ]
        buckets.append(("+Inf", sum(count for _, count, _ in mine)))
        result[stage] = (buckets, sum(total for _, _, total in mine))
    return result


def on_publication_pushed(revision: str, pushed_at: datetime, request_ids: list[int]) -> int:
    """exceptions.hooks.publication_pushed, registered in OutcomesConfig.ready."""
    return observe_pushed(revision=revision, pushed_at=pushed_at, request_ids=request_ids)


def on_engine_revisions_seen(first_seen: dict[str, datetime]) -> int:
    """traffic.hooks.engine_revisions_seen, registered in OutcomesConfig.ready."""
    return observe_engine(first_seen=first_seen)
