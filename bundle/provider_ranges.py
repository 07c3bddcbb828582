"""Provider ranges: a cloud provider's published address ranges, read and checked.

Where a provider's addresses are the only handle (AWS ``S3`` in ``eu-west-1``,
Google Cloud in a scope), the ranges come from the provider's own metadata
file, never from a hand-edited list: AWS ``ip-ranges.json`` and Google
``cloud.json``. A grant names the service (``aws:S3/eu-west-1``); the numbers
are whatever the latest file says. Pure: bytes in, a ``RangeSet`` out.
"""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROVIDERS = ("aws", "google")


def is_service_destination(host: str) -> bool:
    """A destination naming a provider service ("aws:S3/eu-west-1") rather than a host."""
    provider, separator, key = host.partition(":")
    return bool(separator and key) and provider in PROVIDERS


def service_of(host: str) -> str:
    """The provider service a destination names ("" for a host): what ``Grant.service`` records."""
    return host if is_service_destination(host) else ""


class RangeFileError(ValueError):
    """The file is not a valid range file of the provider; the message says where and why."""


@dataclass(frozen=True)
class RangeSet:
    provider: str
    sync_token: str
    published: str  # the file's own creation date, as written
    services: Mapping[str, tuple[str, ...]]  # "S3/eu-west-1" -> CIDRs, sorted

    def service_key(self, service: str) -> str:
        return f"{self.provider}:{service}"


def _cidr(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RangeFileError(f"{where}: expected a CIDR string, got {type(value).__name__}")
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise RangeFileError(f"{where}: {value!r} is not a network address with a prefix length ({exc})") from exc


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise RangeFileError(f"{where}: {key!r} is missing or empty")
    return value


def _sorted(services: Mapping[str, set[str]]) -> dict[str, tuple[str, ...]]:
    def order(cidr: str) -> tuple[int, int, int]:
        network = ipaddress.ip_network(cidr)
        return (network.version, int(network.network_address), network.prefixlen)

    return {service: tuple(sorted(cidrs, key=order)) for service, cidrs in sorted(services.items())}


def parse_aws(document: Mapping[str, Any]) -> RangeSet:
    """AWS ``ip-ranges.json``: ``syncToken``, ``createDate``, ``prefixes`` and ``ipv6_prefixes``."""
    token = _text(document, "syncToken", "ip-ranges.json")
    created = _text(document, "createDate", "ip-ranges.json")
    services: dict[str, set[str]] = defaultdict(set)
    for field, address in (("prefixes", "ip_prefix"), ("ipv6_prefixes", "ipv6_prefix")):
        entries = document.get(field, [])
        if not isinstance(entries, list):
            raise RangeFileError(f"ip-ranges.json: {field!r} must be a list")
        for index, entry in enumerate(entries):
            where = f"ip-ranges.json {field}[{index}]"
            if not isinstance(entry, dict):
                raise RangeFileError(f"{where}: expected an object")
            service, region = _text(entry, "service", where), _text(entry, "region", where)
            services[f"{service}/{region}"].add(_cidr(entry.get(address), f"{where}.{address}"))
    if not services:
        raise RangeFileError("ip-ranges.json: no prefixes at all; refusing to publish an empty range set")
    return RangeSet("aws", token, created, _sorted(services))


def parse_google(document: Mapping[str, Any]) -> RangeSet:
    """Google ``cloud.json``: ``syncToken``, ``creationTime``, ``prefixes`` of ipv4Prefix/ipv6Prefix by scope."""
    token = _text(document, "syncToken", "cloud.json")
    created = _text(document, "creationTime", "cloud.json")
    entries = document.get("prefixes")
    if not isinstance(entries, list) or not entries:
        raise RangeFileError("cloud.json: 'prefixes' must be a non-empty list")
    services: dict[str, set[str]] = defaultdict(set)
    for index, entry in enumerate(entries):
        where = f"cloud.json prefixes[{index}]"
        if not isinstance(entry, dict):
            raise RangeFileError(f"{where}: expected an object")
        field = "ipv4Prefix" if "ipv4Prefix" in entry else "ipv6Prefix"
        service, scope = _text(entry, "service", where), _text(entry, "scope", where)
        services[f"{service}/{scope}"].add(_cidr(entry.get(field), f"{where}.{field}"))
    return RangeSet("google", token, created, _sorted(services))


def parse(provider: str, data: bytes) -> RangeSet:
    if provider not in PROVIDERS:
        raise RangeFileError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RangeFileError(f"the {provider} range file is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise RangeFileError(f"the {provider} range file must be a JSON object")
    return parse_aws(document) if provider == "aws" else parse_google(document)


def changed_services(before: Mapping[str, tuple[str, ...]], after: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Services whose ranges differ (added, removed or renumbered)."""
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
