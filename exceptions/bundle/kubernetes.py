"""Shared helpers for the Kubernetes resources (names, YAML)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import yaml

try:  # libyaml when the wheel has it: 10x faster on large bundles
    from yaml import CSafeDumper as Dumper
except ImportError:  # pragma: no cover - pure-Python fallback
    from yaml import SafeDumper as Dumper  # type: ignore[assignment]

_NOT_DNS1123 = re.compile(r"[^a-z0-9-]+")


def resource_name(*parts: str, max_length: int = 63) -> str:
    """A DNS-1123 label made from ``parts``, with a digest suffix when it had to be shortened."""
    raw = "-".join(parts).lower().replace("*", "wildcard")
    name = _NOT_DNS1123.sub("-", raw).strip("-")
    if len(name) > max_length or name != raw:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: max_length - 9].rstrip('-')}-{digest}"
    return name


def to_yaml(document: dict[str, Any]) -> bytes:
    return yaml.dump(document, Dumper=Dumper, sort_keys=True, default_flow_style=False, allow_unicode=False).encode()
