"""Ingesting what gateways observed: OPA decision-log events and flow records.

A batch is parsed record by record (a bad record is rejected with its reason,
the rest kept), de-duplicated by digest (``decision_id``, or a hash of a flow
record) so a retried batch counts once, aggregated in memory, and written in
one transaction with one upsert per grant and day (allowed), per identity,
host, port and day (denied) and per distinct flow and day (who saw it) —
never one row per event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from bundle.decision import candidate_keys, normalise_host
from exceptions.models import Grant
from exceptions.selectors import known_bundle_revisions
from exceptions.validators import PORT, parse_bounded_int
from foundation.upserts import add_to_rows
from traffic import hooks, scope
from traffic.models import (
    NODE_OBSERVER_KINDS,
    BundleRevisionSeen,
    DeniedTraffic,
    EgressGateway,
    GrantUsage,
    IdentityFeed,
    IngestBatch,
    ObservedFlow,
    SeenRecord,
)

# Decision-log paths of the portal's policy (OPA reports them without the `data.` prefix).
KEPT_PATHS = {"egress/allow", "egress/decision"}


class RecordError(ValueError):
    """One record is unusable; the message says which field and why."""


@dataclass(frozen=True)
class UnparsableLine:
    """A JSON line that did not parse; rejected on its own, the other lines are kept."""

    line: int
    error: str


class Observation(NamedTuple):
    """One parsed record (a NamedTuple: tens of thousands are made per second)."""

    identity: str
    host: str
    port: int
    protocol: str
    allowed: bool
    at: datetime
    digest: int
    grant_id: int | None = None
    bytes: int = 0


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # Of the rejected: records about identities outside the gateway's scope, and OPA events
    # naming a bundle revision the portal never made.
    out_of_scope: int = 0
    unknown_revision: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "out_of_scope": self.out_of_scope,
            "unknown_revision": self.unknown_revision,
            "rejected": self.rejected,
        }


# --- parsing -------------------------------------------------------------------


def _column_length(name: str, *models: type[Any]) -> int:
    return min(int(model._meta.get_field(name).max_length) for model in models)


# The longest values the tables that keep them take: a longer one is a rejected record, never a
# failed batch (a wildcard grant allows any first label, however long).
MAX_IDENTITY = _column_length("identity", DeniedTraffic, ObservedFlow, IdentityFeed)
MAX_HOST = _column_length("host", DeniedTraffic, ObservedFlow)


# The largest count or byte total a row keeps (a PostgreSQL bigint); sums stop there.
MAX_COUNT = 2**63 - 1


def _kept(value: str, name: str, limit: int) -> str:
    if len(value) > limit:
        raise RecordError(f"{name} is {len(value)} characters long; at most {limit} are kept")
    if "\x00" in value:
        raise RecordError(f"{name} contains a NUL character")
    return value


def _saturated(total: int) -> int:
    return min(total, MAX_COUNT)


def _digest(text: str) -> int:
    """A 64-bit digest: an integer key is the cheapest to index at tens of thousands per second
    (a collision would drop one event as a repeat, at about one in 2^32 records a week)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def _text(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{name} is missing or not a string")
    return value.strip()


def _port(value: Any, name: str = "port") -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RecordError(f"{name} must be a number from 1 to 65535")
    try:
        # The portal's one parser: int() would also take '٤٤٣' or '4_43'.
        return parse_bounded_int(value, PORT)
    except ValidationError:
        shown = value if isinstance(value, int) else repr(value[:20])
        raise RecordError(f"{name} must be a number from 1 to 65535, not {shown}") from None


@dataclass(frozen=True)
class Window:
    """The times a record may carry: not in the future, not older than the de-duplication memory."""

    earliest: datetime
    latest: datetime

    @classmethod
    def at(cls, now: datetime) -> Window:
        return cls(now - timedelta(days=settings.EGRESS_INGEST_DEDUP_DAYS), now + timedelta(minutes=10))


def _time(value: Any, name: str, *, window: Window) -> datetime:
    if not isinstance(value, str):
        raise RecordError(f"{name} must be an RFC 3339 time such as 2026-01-31T12:00:00Z")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{name} {value!r} is not an RFC 3339 time such as 2026-01-31T12:00:00Z") from None
    if at.tzinfo is None:
        raise RecordError(f"{name} {value!r} has no time zone; add Z or an offset")
    if at > window.latest:
        raise RecordError(f"{name} {value!r} is in the future; check the gateway's clock")
    if at < window.earliest:
        raise RecordError(f"{name} {value!r} is older than the {settings.EGRESS_INGEST_DEDUP_DAYS} days kept")
    return at


def _normalise_path(path: str) -> str:
    path = path.strip().strip("/")
    if path.startswith("data."):
        path = path[len("data.") :].replace(".", "/")
    elif path.startswith("data/"):
        path = path[len("data/") :]
    return path


def parse_opa_event(event: Any, *, gateway: EgressGateway, window: Window) -> Observation | None:
    """One decision-log event in OPA's format; None when it is about another policy (ignored).

    A fast path takes the well-formed event of the portal's policy; anything else goes
    through the checking path, which names the field that is wrong.
    """
    try:
        path = event["path"]
        if path in FAST_PATHS:
            source, result, decision_id = event["input"], event["result"], event["decision_id"]
            # Normalised before its length is checked: lowering a name may lengthen it.
            identity, host, port = source["identity"], normalise_host(source["host"]), source["port"]
            allowed = result["allow"] if path == "egress/decision" else result
            at = datetime.fromisoformat(event["timestamp"])
            if (
                type(decision_id) is str
                and decision_id
                and type(identity) is str
                and 0 < len(identity) <= MAX_IDENTITY
                and "\x00" not in identity
                and type(host) is str
                and 0 < len(host) <= MAX_HOST
                and "\x00" not in host
                and type(port) is int
                and 0 < port < 65536
                and type(allowed) is bool
                and at.tzinfo is not None
                and window.earliest <= at <= window.latest
            ):
                raw_grant = result.get("grant_id") if type(result) is dict else None
                return Observation(
                    identity,
                    host,
                    port,
                    str(source.get("protocol") or "tcp").lower(),
                    allowed,
                    at if at.tzinfo is UTC else at.astimezone(UTC),
                    _digest(f"opa:{gateway.id}:{decision_id}"),  # .id: .pk is a property, per event
                    raw_grant if type(raw_grant) is int else None,
                )
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    return _checked_opa_event(event, gateway=gateway, window=window)


# The paths as OPA reports them for the portal's policy, taken by the fast path.
FAST_PATHS = frozenset(KEPT_PATHS)


def _checked_opa_event(event: Any, *, gateway: EgressGateway, window: Window) -> Observation | None:
    """The checking path: every field is validated and the first problem is named."""
    if not isinstance(event, dict):
        raise RecordError("the event is not a JSON object")
    decision_id = _text(event, "decision_id")
    path = event.get("path")
    if not isinstance(path, str):
        raise RecordError("path is missing")
    path = _normalise_path(path)
    if path not in KEPT_PATHS:
        return None
    source = event.get("input")
    if not isinstance(source, dict):
        raise RecordError("input is missing or not an object")
    result = event.get("result")
    grant_id: int | None = None
    if path == "egress/allow":
        if not isinstance(result, bool):
            raise RecordError("result of egress/allow must be true or false")
        allowed = result
    else:
        if not isinstance(result, dict) or not isinstance(result.get("allow"), bool):
            raise RecordError("result of egress/decision must be an object with a boolean 'allow'")
        allowed = result["allow"]
        raw_grant = result.get("grant_id")
        grant_id = raw_grant if isinstance(raw_grant, int) and not isinstance(raw_grant, bool) else None
    return Observation(
        identity=_kept(_text(source, "identity"), "identity", MAX_IDENTITY),
        host=_kept(normalise_host(_text(source, "host")), "host", MAX_HOST),
        port=_port(source.get("port")),
        protocol=str(source.get("protocol") or "tcp").lower(),
        allowed=allowed,
        at=_time(event.get("timestamp"), "timestamp", window=window).astimezone(UTC),
        digest=_digest(f"opa:{gateway.pk}:{decision_id}"),
        grant_id=grant_id,
    )


VERDICTS = {"allow": True, "allowed": True, "deny": False, "denied": False, "drop": False, "dropped": False}


def parse_flow(record: Any, *, gateway: EgressGateway, window: Window) -> Observation:
    """One flow record: ``{identity, host, port, protocol, verdict, time, bytes?}``."""
    if isinstance(record, UnparsableLine):
        raise RecordError(f"line {record.line} is not JSON: {record.error}")
    if not isinstance(record, dict):
        raise RecordError("the record is not a JSON object")
    verdict = record.get("verdict")
    if not isinstance(verdict, str) or verdict.lower() not in VERDICTS:
        raise RecordError("verdict must be 'allow' or 'deny'")
    size = record.get("bytes", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise RecordError("bytes must be a whole number of bytes, 0 or more")
    if size > MAX_COUNT:
        raise RecordError(f"bytes {size} is out of range; at most {MAX_COUNT} (2^63 - 1)")
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return Observation(
        identity=_kept(_text(record, "identity"), "identity", MAX_IDENTITY),
        host=_kept(normalise_host(_text(record, "host")), "host", MAX_HOST),
        port=_port(record.get("port")),
        protocol=str(record.get("protocol") or "tcp").lower(),
        allowed=VERDICTS[verdict.lower()],
        at=_time(record.get("time"), "time", window=window).astimezone(UTC),
        digest=_digest(f"flow:{gateway.pk}:{canonical}"),
        bytes=size,
    )


# --- matching allowed traffic to grants ------------------------------------------

GrantRow = tuple[int, str, str, int, str, datetime, datetime, datetime | None]


def _grant_index(observations: Sequence[Observation]) -> dict[str, dict[str, list[GrantRow]]]:
    """identity -> host -> grants that could have allowed these observations (one query per
    thousand identities, only for the hosts they reached)."""
    if not observations:
        return {}
    identities = sorted({o.identity for o in observations})
    hosts = sorted({key for o in observations for key in candidate_keys(o.host)})
    first, last = min(o.at for o in observations), max(o.at for o in observations)
    index: dict[str, dict[str, list[GrantRow]]] = {}
    for chunk_start in range(0, len(identities), 1000):
        rows = Grant.objects.filter(
            identity__in=identities[chunk_start : chunk_start + 1000],
            host__in=hosts,
            valid_from__lte=last,
            expires_at__gt=first - timedelta(days=1),
        ).values_list("id", "identity", "host", "port", "protocol", "valid_from", "expires_at", "revoked_at")
        for row in rows:
            index.setdefault(row[1], {}).setdefault(row[2], []).append(row)
    return index


def _match(index: dict[str, dict[str, list[GrantRow]]], o: Observation) -> int | None:
    by_host = index.get(o.identity)
    if not by_host:
        return None
    for key in candidate_keys(o.host):
        for grant_id, _, _, port, protocol, valid_from, expires_at, revoked_at in by_host.get(key, ()):
            if o.grant_id is not None and grant_id != o.grant_id:
                continue
            open_then = valid_from <= o.at < expires_at and (revoked_at is None or o.at < revoked_at)
            if port == o.port and protocol == o.protocol and open_then:
                return grant_id
    return None


# --- storing ---------------------------------------------------------------------


def _new_digests(digests: list[int], *, today: date) -> set[int]:
    """Record the digests; return those not seen before (the caller holds the transaction)."""
    if not digests:
        return set()
    table = SeenRecord._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f'INSERT INTO "{table}" ("digest", "seen_on") '
                'SELECT unnest(%s::bigint[]), %s ON CONFLICT DO NOTHING RETURNING "digest"',
                # Integers as one array literal: the driver would dump and quote-check each of thousands.
                ["{" + ",".join(map(str, digests)) + "}", today],
            )
            return {row[0] for row in cursor.fetchall()}
    # SQLite: one writer at a time (IMMEDIATE transactions), so look-then-insert cannot race.
    seen: set[int] = set()
    for start in range(0, len(digests), 500):
        seen.update(SeenRecord.objects.filter(digest__in=digests[start : start + 500]).values_list("digest", flat=True))
    new = [d for d in digests if d not in seen]
    SeenRecord.objects.bulk_create([SeenRecord(digest=d, seen_on=today) for d in new], batch_size=500)
    return set(new)


# (column, PostgreSQL array type) of the two aggregate tables.
USAGE_COLUMNS = (
    ("grant_id", "bigint"),
    ("day", "date"),
    ("count", "bigint"),
    ("bytes", "bigint"),
    ("last_seen", "timestamptz"),
)
DENIED_COLUMNS = (
    ("identity", "varchar"),
    ("host", "varchar"),
    ("port", "integer"),
    ("day", "date"),
    ("count", "bigint"),
    ("last_seen", "timestamptz"),
)


def store(
    *,
    gateway: EgressGateway,
    source: str,
    observations: list[Observation],
    result: IngestResult,
    now: datetime,
    revisions: dict[str, datetime] | None = None,
) -> IngestResult:
    """Keep the parsed observations of one batch (the caller has collected the rejections).

    Observations are grouped first (identity, host, port, protocol, verdict, grant, day), so
    matching against grants and the upserts cost one step per group, not per event.
    """
    unique: dict[int, Observation] = {}
    for o in observations:
        unique.setdefault(o.digest, o)
    result.duplicates += len(observations) - len(unique)
    groups: dict[tuple[Any, ...], list[Observation]] = {}
    for o in unique.values():
        day = o.at.date()  # parsed into UTC
        groups.setdefault((o.identity, o.host, o.port, o.protocol, o.allowed, o.grant_id, day), []).append(o)
    # A group is matched by its latest event: the grant that allowed the traffic last that day.
    latest = {key: max(members, key=lambda o: o.at) for key, members in groups.items() if key[4]}
    index = _grant_index(list(latest.values()))
    matched: list[tuple[tuple[Any, ...], int | None, list[Observation]]] = []
    for key, members in groups.items():
        identity, host, port, protocol, allowed = key[:5]
        grant_id = _match(index, latest[key]) if allowed else None
        if allowed and grant_id is None:
            result.rejected.append(
                {
                    "ids": [o.digest for o in members[:10]],
                    "count": len(members),
                    "reason": f"allowed traffic of {identity} to {host}:{port}/{protocol} on {key[6]} "
                    "matches no grant (is the gateway's bundle current?)",
                }
            )
            continue
        matched.append((key, grant_id, members))
    usage: dict[tuple[int, date], list[Any]] = {}
    denied: dict[tuple[str, str, int, date], list[Any]] = {}
    feeds: dict[str, list[datetime]] = {}
    flows: set[tuple[date, str, str, int]] = set()
    with transaction.atomic():
        # Sorted: two batches sharing records take their index locks in the same order (no deadlock).
        new = _new_digests(sorted(o.digest for _, _, members in matched for o in members), today=now.date())
        for key, grant_id, members in matched:
            kept = [o for o in members if o.digest in new]
            result.duplicates += len(members) - len(kept)
            if not kept:
                continue
            first, last = min(o.at for o in kept), max(o.at for o in kept)
            day = key[6]
            if grant_id is not None:
                entry = usage.setdefault((grant_id, day), [0, 0, last])
                entry[0] += len(kept)
                entry[1] = _saturated(entry[1] + sum(o.bytes for o in kept))
                entry[2] = max(entry[2], last)
            else:
                entry = denied.setdefault((key[0], key[1], key[2], day), [0, last])
                entry[0] += len(kept)
                entry[1] = max(entry[1], last)
            seen = feeds.setdefault(key[0], [first, last])
            seen[0], seen[1] = min(seen[0], first), max(seen[1], last)
            flows.add((day, key[0], key[1], key[2]))
            result.accepted += len(kept)
        add_to_rows(
            GrantUsage._meta.db_table,
            ["grant_id", "day"],
            USAGE_COLUMNS,
            [(g, d, c, b, last) for (g, d), (c, b, last) in usage.items()],
            add=["count", "bytes"],
            latest=["last_seen"],
            saturate_at=MAX_COUNT,
        )
        add_to_rows(
            DeniedTraffic._meta.db_table,
            ["identity", "host", "port", "day"],
            DENIED_COLUMNS,
            [(i, h, p, d, c, last) for (i, h, p, d), (c, last) in denied.items()],
            add=["count"],
            latest=["last_seen"],
            saturate_at=MAX_COUNT,
        )
        _record_feeds(gateway, feeds)
        _record_flows(gateway, flows)
        _record_revisions(gateway, revisions or {})
        IngestBatch.objects.create(
            gateway=gateway,
            source=source,
            received_at=now,
            accepted=result.accepted,
            duplicates=result.duplicates,
            ignored=result.ignored,
            rejected=len(result.rejected),
            out_of_scope=result.out_of_scope,
            unknown_revision=result.unknown_revision,
        )
        if result.accepted:
            EgressGateway.objects.filter(pk=gateway.pk).update(last_record_at=now)
    return result


def _record_feeds(gateway: EgressGateway, feeds: dict[str, list[datetime]]) -> None:
    table = IdentityFeed._meta.db_table
    if not feeds:
        return
    rows = sorted((identity, gateway.pk, first, last) for identity, (first, last) in feeds.items())
    with connection.cursor() as cursor:
        sql = (
            f'INSERT INTO "{table}" ("identity", "gateway_id", "first_seen", "last_seen") {{source}} '
            'ON CONFLICT ("identity", "gateway_id") DO UPDATE SET '
            f'"first_seen" = CASE WHEN EXCLUDED."first_seen" < "{table}"."first_seen" '
            f'THEN EXCLUDED."first_seen" ELSE "{table}"."first_seen" END, '
            f'"last_seen" = CASE WHEN EXCLUDED."last_seen" > "{table}"."last_seen" '
            f'THEN EXCLUDED."last_seen" ELSE "{table}"."last_seen" END'
        )
        if connection.vendor == "postgresql":
            cursor.execute(
                sql.format(
                    source="SELECT * FROM unnest(%s::varchar[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])"
                ),
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            adapt = connection.ops.adapt_datetimefield_value
            cursor.executemany(
                sql.format(source="VALUES (%s, %s, %s, %s)"),
                [(i, g, adapt(f), adapt(last)) for i, g, f, last in rows],
            )


FLOW_ROWS = "SELECT * FROM unnest(%s::date[], %s::varchar[], %s::varchar[], %s::integer[], %s::boolean[])"


def _record_flows(gateway: EgressGateway, flows: set[tuple[date, str, str, int]]) -> None:
    """One row per distinct flow and day, marked once any registered egress point reports it
    (a node observer's report of a flow already marked changes nothing, nor does a repeat)."""
    if not flows:
        return
    via = gateway.kind not in NODE_OBSERVER_KINDS
    table = ObservedFlow._meta.db_table
    # Sorted: concurrent batches lock shared rows in the same order.
    rows = [(*flow, via) for flow in sorted(flows)]
    sql = (
        f'INSERT INTO "{table}" ("day", "identity", "host", "port", "via_egress_point") {{source}} '
        'ON CONFLICT ("day", "identity", "host", "port") DO UPDATE SET "via_egress_point" = TRUE '
        f'WHERE EXCLUDED."via_egress_point" AND NOT "{table}"."via_egress_point"'
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                sql.format(source=FLOW_ROWS),
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            cursor.executemany(sql.format(source="VALUES (%s, %s, %s, %s, %s)"), rows)


def _record_revisions(gateway: EgressGateway, revisions: dict[str, datetime]) -> None:
    """Keep the earliest decision seen per bundle revision (a batch holds one or two revisions,
    and batches may arrive out of order, so an earlier time replaces a later one). A revision
    reported for the first time ends the time to policy update of the approvals it carries."""
    if not revisions:
        return
    rows = sorted(revisions.items())
    if connection.vendor == "postgresql":
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            cursor.execute(
                f'INSERT INTO "{BundleRevisionSeen._meta.db_table}" ("revision", "first_seen", "gateway_id") '  # noqa: S608
                f"VALUES {', '.join(['(%s, %s, %s)'] * len(rows))} "
                'ON CONFLICT ("revision") DO NOTHING RETURNING "revision"',
                [value for r, at in rows for value in (r, adapt(at), gateway.pk)],
            )
            first = {row[0] for row in cursor.fetchall()}
    else:
        # SQLite: one writer at a time, so look-then-insert cannot race (and RETURNING needs 3.35).
        known = set(BundleRevisionSeen.objects.filter(pk__in=list(revisions)).values_list("pk", flat=True))
        first = {r for r, _ in rows if r not in known}
        BundleRevisionSeen.objects.bulk_create(
            [BundleRevisionSeen(revision=r, first_seen=at, gateway=gateway) for r, at in rows if r in first]
        )
    hooks.engine_revisions_seen({r: at for r, at in rows if r in first})
    for revision, at in rows:
        if revision not in first:
            BundleRevisionSeen.objects.filter(revision=revision, first_seen__gt=at).update(
                first_seen=at, gateway=gateway
            )


MAX_REVISION = int(BundleRevisionSeen._meta.get_field("revision").max_length or 64)


NO_REVISIONS: tuple[str, ...] = ()

# Revisions found to be the portal's, each as the tuple an event naming only it yields: one
# stays the portal's for good, and a batch names one or two, so the same few are neither
# checked nor looked up again for every event and batch of this process.
_KNOWN_REVISIONS: dict[str, tuple[str, ...]] = {}


def _revisions_named(event: dict[str, Any]) -> tuple[str, ...]:
    """The bundle revisions an OPA decision says it was made with (``bundles: {name: {revision}}``)."""
    bundles = event.get("bundles")
    if bundles is None:
        return NO_REVISIONS
    if type(bundles) is dict and len(bundles) == 1:
        for bundle in bundles.values():
            revision = bundle.get("revision") if type(bundle) is dict else None
            if type(revision) is str and revision in _KNOWN_REVISIONS:
                return _KNOWN_REVISIONS[revision]
    if type(bundles) is not dict:
        raise RecordError("bundles must be an object of {name: {revision}}")
    named: tuple[str, ...] = NO_REVISIONS
    for name, bundle in bundles.items():
        revision = bundle.get("revision") if type(bundle) is dict else None
        if revision is None:
            continue
        if type(revision) is not str or not 0 < len(revision) <= MAX_REVISION or "\x00" in revision:
            raise RecordError(f"bundles.{str(name)[:40]}.revision must be 1 to {MAX_REVISION} characters")
        named += (revision,)
    return named


def _known_revisions(named: set[str]) -> set[str]:
    unknown = named - _KNOWN_REVISIONS.keys()
    if unknown:
        if len(_KNOWN_REVISIONS) > 10_000:
            _KNOWN_REVISIONS.clear()
        _KNOWN_REVISIONS.update((r, (r,)) for r in known_bundle_revisions(unknown))
    return {r for r in named if r in _KNOWN_REVISIONS}


def _refuse(result: IngestResult, position: int, record: Any, reason: str) -> None:
    rejected: dict[str, Any] = {"index": position, "reason": reason}
    if isinstance(record, dict) and isinstance(record.get("decision_id"), str):
        rejected["decision_id"] = record["decision_id"][:200]
    result.rejected.append(rejected)


def _ingest(
    records: Iterable[Any], *, gateway: EgressGateway, source: str, now: datetime | None = None
) -> IngestResult:
    now = now or timezone.now()
    window = Window.at(now)
    result = IngestResult()
    records = records if isinstance(records, list) else list(records)
    observations: list[Observation] = []
    positions: list[int] = []
    named: list[tuple[str, ...]] = []
    for position, record in enumerate(records):
        try:
            if source == "opa":
                o = parse_opa_event(record, gateway=gateway, window=window)
                if o is not None:
                    named.append(_revisions_named(record))
            else:
                o = parse_flow(record, gateway=gateway, window=window)
        except RecordError as exc:
            _refuse(result, position, record, str(exc))
            continue
        if o is None:
            result.ignored += 1
        else:
            observations.append(o)
            positions.append(position)
    # The one check of what this gateway may speak for (traffic.scope), before anything counts.
    out_of_scope = scope.refusals(gateway, {o.identity for o in observations})
    every_revision = set().union(*named) if named else set()
    known = _known_revisions(every_revision) if every_revision else every_revision
    if out_of_scope or known != every_revision:
        kept, kept_named = [], []
        for i, o in enumerate(observations):
            position, revisions_named = positions[i], named[i] if named else NO_REVISIONS
            reason = out_of_scope.get(o.identity)
            if reason is not None:
                result.out_of_scope += 1
                _refuse(result, position, records[position], reason)
                continue
            unknown = [r for r in revisions_named if r not in known]
            if unknown:
                result.unknown_revision += 1
                reason = f"bundle revision {unknown[0]!r} was never published by the portal"
                _refuse(result, position, records[position], reason)
                continue
            kept.append(o)
            kept_named.append(revisions_named)
        observations, named = kept, kept_named
    revisions: dict[str, datetime] = {}
    for o, revisions_named in zip(observations, named, strict=False):
        for revision in revisions_named:
            if revision not in revisions or o.at < revisions[revision]:
                revisions[revision] = o.at
    return store(gateway=gateway, source=source, observations=observations, result=result, now=now, revisions=revisions)


def ingest_decisions(*, gateway: EgressGateway, events: Iterable[Any], now: datetime | None = None) -> IngestResult:
    """A batch of OPA decision-log events from ``gateway``."""
    return _ingest(events, gateway=gateway, source="opa", now=now)


def ingest_flows(*, gateway: EgressGateway, records: Iterable[Any], now: datetime | None = None) -> IngestResult:
    """A batch of flow records from ``gateway``."""
    return _ingest(records, gateway=gateway, source="flows", now=now)


def prune_seen_records(*, now: datetime | None = None) -> int:
    """Forget digests, and the days' distinct flows, older than the window in which records are
    accepted at all: no record can change those days any more, and the snapshot job stopped
    taking their traffic figures again when they left the window. Returns the rows deleted."""
    cutoff = (now or timezone.now()).date() - timedelta(days=settings.EGRESS_INGEST_DEDUP_DAYS + 1)
    digests, _ = SeenRecord.objects.filter(seen_on__lt=cutoff).delete()
    flows, _ = ObservedFlow.objects.filter(day__lt=cutoff).delete()
    return digests + flows
