"""The approval policy file: load, validate, match.

The file is YAML in the repository (``approvals/policies/default.yaml`` unless
``EGRESS_APPROVAL_POLICY_FILE`` names another). It is validated when the
process starts; a bad file stops start-up with the file, the line and the
problem. The SHA-256 of its bytes is the policy revision every decision records.

This module reads no database: a rule is matched against ``RequestFacts``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from exceptions.choices import DataClass, Environment, Purpose, RiskTier

OWNING_TEAM = "owning-team"
MATCH_VALUES: dict[str, tuple[str, ...] | None] = {
    "environment": tuple(Environment.values),
    "data_class": tuple(DataClass.values),
    "risk_tier": tuple(RiskTier.values),
    "purpose": tuple(Purpose.values),
    "team": None,  # team slugs: any string
}
RULE_KEYS = {"name", "description", "match", "require", "outside_team", "max_lifetime", "change_window", "mfa"}
REQUIREMENT_KEYS = {"group", "count", "outside_team"}
DURATION = re.compile(r"^(\d+)([dh])$")
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")


class PolicyError(Exception):
    """A problem in the policy file, with where it is."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class RequestFacts:
    """What a rule can match on, read from a request."""

    environment: str
    data_class: str
    risk_tier: str
    purpose: str
    team: str
    wildcard: bool


@dataclass(frozen=True)
class Requirement:
    group: str
    count: int
    outside_team: bool

    @property
    def label(self) -> str:
        return "team approver" if self.group == OWNING_TEAM else self.group.replace("-", " ").rstrip("s")

    def describe(self) -> str:
        who = "approver of the owning team" if self.group == OWNING_TEAM else f"member of {self.group}"
        outside = " from outside the requesting team" if self.outside_team else ""
        return f"{self.count} {who}{outside}"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    line: int
    match: Mapping[str, frozenset[str] | bool] = field(default_factory=dict)
    requires: tuple[Requirement, ...] = ()
    max_lifetime: timedelta | None = None
    change_window: bool = False
    mfa: bool = False

    def matches(self, facts: RequestFacts) -> bool:
        for key, expected in self.match.items():
            actual = getattr(facts, key)
            if isinstance(expected, bool):
                if actual != expected:
                    return False
            elif actual not in expected:
                return False
        return True

    def why(self) -> str:
        """Why the rule applied, in words: the conditions it matched on."""
        if not self.match:
            return "no earlier rule matched"
        parts = []
        for key, expected in self.match.items():
            if isinstance(expected, bool):
                parts.append(f"{'a' if expected else 'no'} wildcard destination")
            else:
                parts.append(f"{key.replace('_', ' ')} is {' or '.join(sorted(expected))}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Policy:
    path: str
    revision: str
    text: str
    rules: tuple[Rule, ...]

    @property
    def short_revision(self) -> str:
        return self.revision[:12]

    def rule_for(self, facts: RequestFacts) -> Rule:
        for rule in self.rules:
            if rule.matches(facts):
                return rule
        raise AssertionError("validated policies end with a rule that matches everything")

    def named_groups(self) -> frozenset[str]:
        return frozenset(r.group for rule in self.rules for r in rule.requires if r.group != OWNING_TEAM)


# --- Loading and validation -----------------------------------------------------


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping(path: Path, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(path, _line(node), f"{what} must be a mapping (key: value lines).")
    items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise PolicyError(path, _line(key), f"keys of {what} must be plain words.")
        if key.value in items:
            raise PolicyError(path, _line(key), f"{key.value!r} appears twice in {what}.")
        items[key.value] = (key, value)
    return items


def _scalar(path: Path, node: yaml.Node, what: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise PolicyError(path, _line(node), f"{what} must be a single value.")
    return yaml.safe_load(yaml.serialize(node))


def _bool(path: Path, node: yaml.Node, what: str) -> bool:
    value = _scalar(path, node, what)
    if not isinstance(value, bool):
        raise PolicyError(path, _line(node), f"{what} must be true or false, not {node.value!r}.")
    return value


def _unknown(path: Path, items: Mapping[str, tuple[yaml.Node, yaml.Node]], allowed: set[str], what: str) -> None:
    for name, (key, _) in items.items():
        if name not in allowed:
            raise PolicyError(
                path, _line(key), f"unknown key {name!r} in {what}; use one of {', '.join(sorted(allowed))}."
            )


def _duration(path: Path, node: yaml.Node) -> timedelta:
    value = str(_scalar(path, node, "max_lifetime"))
    found = DURATION.match(value)
    if not found or int(found.group(1)) == 0:
        raise PolicyError(path, _line(node), f"max_lifetime {value!r} is not a duration; write it as 7d or 12h.")
    amount = int(found.group(1))
    return timedelta(days=amount) if found.group(2) == "d" else timedelta(hours=amount)


def _match(path: Path, node: yaml.Node, rule: str) -> dict[str, frozenset[str] | bool]:
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return {}
    items = _mapping(path, node, f"match of rule {rule!r}")
    _unknown(path, items, {*MATCH_VALUES, "wildcard"}, f"match of rule {rule!r}")
    result: dict[str, frozenset[str] | bool] = {}
    for name, (_, value_node) in items.items():
        if name == "wildcard":
            result[name] = _bool(path, value_node, "match.wildcard")
            continue
        values_nodes = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        if not values_nodes:
            raise PolicyError(path, _line(value_node), f"match.{name} lists no values; remove it to match any.")
        values = []
        for item in values_nodes:
            value = str(_scalar(path, item, f"match.{name}"))
            allowed = MATCH_VALUES[name]
            if allowed is not None and value not in allowed:
                raise PolicyError(path, _line(item), f"match.{name} {value!r} is not one of {', '.join(allowed)}.")
            values.append(value)
        result[name] = frozenset(values)
    return result


def _requirements(path: Path, node: yaml.Node, rule: str, outside_default: bool) -> tuple[Requirement, ...]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise PolicyError(path, _line(node), f"require of rule {rule!r} must list at least one group and count.")
    seen: set[str] = set()
    requirements = []
    for item in node.value:
        items = _mapping(path, item, f"a requirement of rule {rule!r}")
        _unknown(path, items, REQUIREMENT_KEYS, f"a requirement of rule {rule!r}")
        if "group" not in items:
            raise PolicyError(path, _line(item), f"a requirement of rule {rule!r} names no group.")
        group = str(_scalar(path, items["group"][1], "group"))
        if not GROUP_NAME.match(group):
            raise PolicyError(path, _line(items["group"][1]), f"group {group!r} is not a valid group name.")
        if group in seen:
            raise PolicyError(path, _line(items["group"][1]), f"group {group!r} is required twice in rule {rule!r}.")
        seen.add(group)
        count = _scalar(path, items["count"][1], "count") if "count" in items else 1
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise PolicyError(
                path, _line(items["count"][1]), f"count must be a whole number of at least 1, not {count!r}."
            )
        outside = _bool(path, items["outside_team"][1], "outside_team") if "outside_team" in items else outside_default
        requirements.append(Requirement(group=group, count=count, outside_team=outside))
    return tuple(requirements)


def _rule(path: Path, node: yaml.Node, index: int) -> Rule:
    items = _mapping(path, node, f"rule {index + 1}")
    _unknown(path, items, RULE_KEYS, f"rule {index + 1}")
    if "name" not in items:
        raise PolicyError(path, _line(node), f"rule {index + 1} has no name.")
    name = str(_scalar(path, items["name"][1], "name"))
    if "require" not in items:
        raise PolicyError(path, _line(node), f"rule {name!r} says nobody must approve; add require.")
    outside = _bool(path, items["outside_team"][1], "outside_team") if "outside_team" in items else False
    return Rule(
        name=name,
        description=str(_scalar(path, items["description"][1], "description")) if "description" in items else "",
        line=_line(node),
        match=_match(path, items["match"][1], name) if "match" in items else {},
        requires=_requirements(path, items["require"][1], name, outside),
        max_lifetime=_duration(path, items["max_lifetime"][1]) if "max_lifetime" in items else None,
        change_window=_bool(path, items["change_window"][1], "change_window") if "change_window" in items else False,
        mfa=_bool(path, items["mfa"][1], "mfa") if "mfa" in items else False,
    )


def parse_policy(text: str, *, path: Path | str) -> Policy:
    """Validate ``text`` as a policy file; PolicyError names the line and the problem."""
    path = Path(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise PolicyError(path, mark.line + 1 if mark else None, f"not valid YAML: {exc.problem}") from exc
    if root is None:
        raise PolicyError(path, 1, "the file is empty; it needs version: 1 and a list of rules.")
    top = _mapping(path, root, "the policy file")
    _unknown(path, top, {"version", "rules"}, "the policy file")
    if "version" not in top or _scalar(path, top["version"][1], "version") != 1:
        raise PolicyError(path, _line(top["version"][1]) if "version" in top else 1, "version must be 1.")
    if "rules" not in top:
        raise PolicyError(path, _line(root), "the policy has no rules.")
    rules_node = top["rules"][1]
    if not isinstance(rules_node, yaml.SequenceNode) or not rules_node.value:
        raise PolicyError(path, _line(rules_node), "rules must be a non-empty list.")
    rules = [_rule(path, node, i) for i, node in enumerate(rules_node.value)]
    names: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in names:
            raise PolicyError(
                path, rule.line, f"rule name {rule.name!r} is used twice (first on line {names[rule.name].line})."
            )
        names[rule.name] = rule
    for rule in rules[:-1]:
        if not rule.match:
            raise PolicyError(
                path, rule.line, f"rule {rule.name!r} matches everything, so the rules after it can never apply."
            )
    if rules[-1].match:
        raise PolicyError(
            path, rules[-1].line, f"the final rule {rules[-1].name!r} must match everything (remove its match)."
        )
    revision = hashlib.sha256(text.encode()).hexdigest()
    return Policy(path=str(path), revision=revision, text=text, rules=tuple(rules))


def load_policy(path: Path | str) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(path, None, f"cannot read the policy file: {exc.strerror}") from exc
    return parse_policy(text, path=path)


_cache: dict[tuple[str, float], Policy] = {}
logger = logging.getLogger(__name__)


def current_policy() -> Policy:
    """The policy in force: the configured file, re-read when it changes on disk.

    Start-up refuses a bad file; a file broken while running keeps the last
    good policy of that path in force (and says so in the log) rather than
    failing every page that asks who may approve.
    """
    path = Path(settings.EGRESS_APPROVAL_POLICY_FILE)
    last_good = next((p for (cached_path, _), p in _cache.items() if cached_path == str(path)), None)
    try:
        key = (str(path), path.stat().st_mtime)
        policy = _cache.get(key)
        if policy is None:
            policy = load_policy(path)
    except (OSError, PolicyError) as exc:
        if last_good is None:
            if isinstance(exc, PolicyError):
                raise
            raise PolicyError(path, None, f"cannot read the policy file: {exc.strerror}") from exc
        logger.error(
            "Approval policy %s is unusable (%s); revision %s stays in force.", path, exc, last_good.short_revision
        )
        return last_good
    _cache.clear()
    _cache[key] = policy
    return policy
