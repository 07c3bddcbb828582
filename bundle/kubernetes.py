"""Shared helpers for the Kubernetes resources (names, YAML)."""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any

_NOT_DNS1123 = re.compile(r"[^a-z0-9-]+")


@lru_cache(maxsize=200_000)
def resource_name(*parts: str, max_length: int = 63) -> str:
    """A DNS-1123 label made from ``parts``, with a digest suffix when it had to be shortened."""
    raw = "-".join(parts).lower().replace("*", "wildcard")
    name = _NOT_DNS1123.sub("-", raw).strip("-")
    if len(name) > max_length or name != raw:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: max_length - 9].rstrip('-')}-{digest}"
    return name


def team_root(team: str) -> str:
    """Where a team's fragments live in the repository ("" for grants no team owns)."""
    return f"teams/{team}/" if team else ""


quote = json.encoder.encode_basestring_ascii
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


@lru_cache(maxsize=4096)
def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS else quote(key)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # JSON strings are valid YAML double-quoted scalars: never mistaken for
        # numbers, booleans or YAML syntax, whatever the host or label holds.
        return quote(value)
    raise TypeError(f"cannot emit {type(value).__name__} as YAML")


def emit_lines(value: Any, indent: str, lines: list[str]) -> None:
    if isinstance(value, dict):
        for key in sorted(value):
            item = value[key]
            if isinstance(item, dict | list) and item:
                lines.append(f"{indent}{_key(key)}:")
                emit_lines(item, indent + "  " if isinstance(item, dict) else indent, lines)
            else:
                lines.append(f"{indent}{_key(key)}: {_inline(item)}")
        return
    if all(type(item) is str for item in value):  # host lists: the bulk of large bundles
        lines.extend(f"{indent}- {quote(item)}" for item in value)
        return
    for item in value:
        if isinstance(item, dict) and len(item) == 1:
            # The common case (a toFQDNs entry, a port): one line, no recursion.
            [(key, inner)] = item.items()
            if not isinstance(inner, dict | list) or not inner:
                lines.append(f"{indent}- {_key(key)}: {_inline(inner)}")
                continue
        if isinstance(item, dict | list) and item:
            nested: list[str] = []
            emit_lines(item, indent + "  ", nested)
            lines.append(f"{indent}- {nested[0].lstrip()}")
            lines.extend(nested[1:])
        else:
            lines.append(f"{indent}- {_inline(item)}")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(document: dict[str, Any]) -> bytes:
    """Block-style YAML with sorted keys and double-quoted strings.

    A small emitter for the plain data the bundle holds: PyYAML's representer
    would cost most of a 100,000-grant compile. The tests load every file back
    with PyYAML and compare.
    """
    lines: list[str] = []
    emit_lines(document, "", lines)
    return ("\n".join(lines) + "\n").encode("utf-8")
