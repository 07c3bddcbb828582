"""Provider ranges: load a provider's published range file, check it, keep each new version.

The file is read before the transaction (a slow provider never holds a
lock); the new version, its audit event and the publish it triggers are
written together. A file with the sync token already stored changes nothing.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit.services import Actor, record_event
from bundle.provider_ranges import RangeFileError, changed_services, parse
from exceptions.models import ProviderRangeSet
from foundation.outbox.services import enqueue

MAX_BYTES = 32 * 2**20  # AWS's file is about 2 MB; anything far larger is not a range file


def read_range_file(source: str) -> bytes:
    """The bytes at ``source`` (an http(s) URL or a local path)."""
    try:
        if source.startswith(("https://", "http://")):
            with urllib.request.urlopen(source, timeout=settings.EGRESS_PROVIDER_RANGES_TIMEOUT) as response:  # noqa: S310 - http(s) only
                data: bytes = response.read(MAX_BYTES + 1)
        else:
            data = Path(source).read_bytes()
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise ValidationError({"source": f"cannot read the range file at {source}: {exc}"}) from exc
    if len(data) > MAX_BYTES:
        raise ValidationError({"source": f"{source} is larger than {MAX_BYTES:,} bytes; is it a range file?"})
    return data


def configured_sources() -> dict[str, str]:
    """Provider to URL-or-path, from EGRESS_PROVIDER_RANGE_SOURCES ("aws=...,google=...")."""
    pairs = (item.partition("=") for item in settings.EGRESS_PROVIDER_RANGE_SOURCES.split(",") if "=" in item)
    return {provider.strip(): source.strip() for provider, _, source in pairs}


def sync_configured_provider(*, actor: Actor, provider: str) -> str:
    """The periodic job: sync ``provider`` from its configured source; a line saying what happened."""
    source = configured_sources().get(provider)
    if not source:
        return f"{provider}: no source configured"
    version = sync_provider_ranges(actor=actor, provider=provider, source=source)
    return f"{provider}: unchanged" if version is None else f"{provider}: stored {version.sync_token}"


def sync_provider_ranges(*, actor: Actor, provider: str, source: str) -> ProviderRangeSet | None:
    """Load ``provider``'s ranges from ``source``; the new version, or None if nothing changed."""
    return record_provider_ranges(actor=actor, provider=provider, source=source, data=read_range_file(source))


@transaction.atomic
def record_provider_ranges(*, actor: Actor, provider: str, source: str, data: bytes) -> ProviderRangeSet | None:
    try:
        ranges = parse(provider, data)
    except RangeFileError as exc:
        raise ValidationError({"source": f"{source}: {exc}"}) from exc
    latest = ProviderRangeSet.objects.select_for_update().filter(provider=provider).first()
    if latest is not None and latest.sync_token == ranges.sync_token:
        return None
    services = {key: list(cidrs) for key, cidrs in ranges.services.items()}
    try:
        with transaction.atomic():
            version = ProviderRangeSet.objects.create(
                provider=provider,
                source=source,
                sync_token=ranges.sync_token,
                published=ranges.published,
                services=services,
            )
    except IntegrityError:
        return None  # another run stored this very version first
    before = {key: tuple(cidrs) for key, cidrs in (latest.services if latest else {}).items()}
    changed = changed_services(before, ranges.services)
    record_event(
        actor=actor,
        action="provider_ranges.synced",
        obj=version,
        before={"sync_token": latest.sync_token, "published": latest.published} if latest else None,
        after={
            "sync_token": ranges.sync_token,
            "published": ranges.published,
            "services": len(services),
            "changed_services": changed[:200],
            "changed_count": len(changed),
        },
        reason=f"{provider} ranges from {source}",
    )
    # The numbers changed, the approvals did not: the bundle is published again as it is.
    enqueue(
        kind="bundle.publish",
        payload={"trigger": f"{provider} ranges {ranges.sync_token}"},
        idempotency_key=f"provider-ranges:{provider}:{ranges.sync_token}",
    )
    return version
