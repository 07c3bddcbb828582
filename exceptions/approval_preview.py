"""The exact bundle diffs that approving a pending request now would cause: what the
publish at approval changes, and, for a request that goes live later (a change window,
a freeze, a desired start), what changes when it does. A grant that has not started
enters only the OPA data (with its valid_from); Cilium and Istio carry valid grants only.

A provider-service destination ("aws:S3/eu-west-1") is approved by name, never by its
numbers (issue 11 §6): the bundle carries the service's current CIDRs and a new range
file changes them without a new approval. So the preview names the service, with the
count of its current ranges and the range file's sync token and date as context, and
every CIDR list in the diffs (the OPA data's ``cidrs``, Cilium's ``toCIDRSet``) is shown
as that line instead. Everything else, name destinations included, is the exact diff."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Max
from django.utils import timezone

from bundle.compiler import compile_bundle
from bundle.emitters.opa import DATA
from bundle.provider_ranges import is_service_destination, service_of
from bundle.records import GrantRecord
from exceptions.models import ExceptionRequest, Grant, ProviderRangeSet
from exceptions.selectors import bundle_options, bundle_records, latest_provider_ranges, service_cidrs

IGNORED = {"MANIFEST.json", "opa/.manifest"}  # their only change is the revision
# A CIDR line of Cilium's toCIDRSet as kubernetes.to_yaml writes it.
_CIDR_LINE = re.compile(r'^(?P<indent>\s*)- cidr: "?(?P<cidr>[^"\s]+)"?\s*$')


@dataclass(frozen=True)
class FileDiff:
    path: str
    diff: str


@dataclass(frozen=True)
class ServiceRanges:
    """A provider-service destination as the approval names it: the service, not its numbers."""

    service: str  # "aws:S3/eu-west-1", what the grant records
    provider: str
    name: str  # "S3"
    scope: str  # the AWS region or the Google scope
    ranges: int  # the service's CIDRs in the newest range file, now
    sync_token: str  # "" while no range file of the provider is loaded
    published: str  # the range file's own date, as written
    cidrs: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def range_file(self) -> str:
        if not self.sync_token:
            return f"no {self.provider} range file loaded yet"
        return f"{self.provider} range file {self.sync_token} of {self.published}"

    def describe(self) -> str:
        return f"{self.service}: {self.ranges} current range{'' if self.ranges == 1 else 's'} ({self.range_file})"


def service_ranges(services: Iterable[str], ranges: dict[str, ProviderRangeSet]) -> dict[str, ServiceRanges]:
    found = {}
    for service in sorted(set(services)):
        provider, _, key = service.partition(":")
        name, _, scope = key.rpartition("/")
        version = ranges.get(provider)
        cidrs = service_cidrs(service, ranges)
        found[service] = ServiceRanges(
            service=service,
            provider=provider,
            name=name,
            scope=scope,
            ranges=len(cidrs),
            sync_token=version.sync_token if version else "",
            published=version.published if version else "",
            cidrs=frozenset(cidrs),
        )
    return found


def _named(value: Any, services: dict[str, ServiceRanges]) -> Any:
    """The OPA data with each grant's ``cidrs`` replaced by the line naming its service."""
    if isinstance(value, list):
        return [_named(item, services) for item in value]
    if not isinstance(value, dict):
        return value
    named = {key: _named(item, services) for key, item in value.items()}
    if isinstance(named.get("cidrs"), list) and named.get("host") in services:
        named["cidrs"] = services[named["host"]].describe()
    return named


def _cidr_runs_named(lines: list[str], services: dict[str, ServiceRanges]) -> list[str]:
    """Each run of toCIDRSet lines as one comment naming the services it holds the ranges of."""
    out: list[str] = []
    run: list[str] = []
    indent = ""

    def flush() -> None:
        if not run:
            return
        owners = [s for s in services.values() if s.cidrs.intersection(run)]
        named = ", ".join(s.service for s in owners) or "provider services"
        files = "; ".join(sorted({s.range_file for s in owners}))
        out.append(f"{indent}# {len(run)} current range{'' if len(run) == 1 else 's'} of {named} ({files})\n")
        run.clear()

    for line in lines:
        match = _CIDR_LINE.match(line)
        if match:
            indent = match["indent"]
            run.append(match["cidr"])
            continue
        flush()
        out.append(line)
    flush()
    return out


def _json_lines(document: Any) -> list[str]:
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").splitlines(keepends=True)


def _pretty(path: str, data: bytes | None, identity: str, services: dict[str, ServiceRanges]) -> list[str]:
    if data is None:
        return []
    if path == DATA:
        # Only this identity's part can change; diffing the whole document would
        # cost time proportional to every grant in the organisation.
        shard = json.loads(data)["egress"]["shard"].get(identity)
        return _json_lines(_named({identity: shard}, services))
    if path.startswith("opa/egress/grants/") and path.endswith("/data.json"):
        part = json.loads(data).get(identity, {})
        return _json_lines(_named({identity: part}, services))
    lines = data.decode("utf-8").splitlines(keepends=True)
    return _cidr_runs_named(lines, services) if services else lines


@dataclass(frozen=True)
class ApprovalPreview:
    on_approval: list[FileDiff]
    # Set when the grants start after the approval: the change at that moment.
    go_live: datetime | None = None
    at_go_live: list[FileDiff] = field(default_factory=list)
    # The request's provider services: approved by name, their ranges follow the provider's file.
    services: list[ServiceRanges] = field(default_factory=list)


def _diffs(
    before: dict[str, bytes], after: dict[str, bytes], identity: str, services: dict[str, ServiceRanges]
) -> list[FileDiff]:
    diffs = []
    for path in sorted((before.keys() | after.keys()) - IGNORED):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        lines = difflib.unified_diff(
            _pretty(path, old, identity, services),
            _pretty(path, new, identity, services),
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
    ranges = latest_provider_ranges()
    proposed = [
        GrantRecord(
            id=next_id + i,
            identity=workload.identity,
            host=d.host,
            service=service_of(d.host),
            cidrs=service_cidrs(d.host, ranges) if is_service_destination(d.host) else (),
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

    # The workload's other services show in the same files, so they are named there too.
    services = service_ranges(
        (r.service for r in [*current, *proposed] if r.identity == workload.identity and r.service), ranges
    )
    requested = list({r.service: services[r.service] for r in proposed if r.service}.values())

    def compiled(records: list[GrantRecord], at: datetime) -> dict[str, bytes]:
        return compile_bundle(records, now=at, options=bundle_options()).files

    def diffs(at: datetime) -> list[FileDiff]:
        return _diffs(compiled(current, at), compiled([*current, *proposed], at), workload.identity, services)

    on_approval = diffs(now)
    if valid_from <= now:
        return ApprovalPreview(on_approval=on_approval, services=requested)
    return ApprovalPreview(
        on_approval=on_approval, go_live=valid_from, at_go_live=diffs(valid_from), services=requested
    )
