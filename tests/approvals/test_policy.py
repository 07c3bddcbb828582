"""The approval policy file: every error names file and line; rules match first-to-last."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from approvals.policy import PolicyError, RequestFacts, current_policy, load_policy, parse_policy

DEFAULT = Path(__file__).resolve().parents[2] / "approvals" / "policies" / "default.yaml"

GOOD_TAIL = """
  - name: default
    require:
      - group: owning-team
"""

BAD_FILES = [
    # (text, line, words in the problem)
    ("version: 1\nrules:\n  - name: a\n    require: [ {group: owning-team\n", 5, "not valid YAML"),
    ("", 1, "empty"),
    ("version: 2\nrules: []\n", 1, "version must be 1"),
    ("version: 1\nrules: []\n", 2, "non-empty list"),
    ("version: 1\nrulez: []\n", 2, "unknown key 'rulez'"),
    ("version: 1\nrules:\n  - require:\n      - group: owning-team\n", 3, "has no name"),
    ("version: 1\nrules:\n  - name: x\n", 3, "says nobody must approve"),
    (
        "version: 1\nrules:\n  - name: x\n    match:\n      risk_tier: extreme\n    require: [{group: owning-team}]\n"
        + GOOD_TAIL,
        5,
        "match.risk_tier 'extreme' is not one of low, medium, high",
    ),
    (
        "version: 1\nrules:\n  - name: x\n    match:\n      colour: red\n    require: [{group: owning-team}]\n"
        + GOOD_TAIL,
        5,
        "unknown key 'colour'",
    ),
    (
        "version: 1\nrules:\n  - name: x\n    match: {environment: prod}\n    require:\n      - group: owning-team\n"
        "        count: 0\n" + GOOD_TAIL,
        7,
        "count must be a whole number of at least 1",
    ),
    (
        "version: 1\nrules:\n  - name: x\n    match: {environment: prod}\n    max_lifetime: a week\n"
        "    require: [{group: owning-team}]\n" + GOOD_TAIL,
        5,
        "max_lifetime 'a week' is not a duration",
    ),
    (
        "version: 1\nrules:\n  - name: x\n    match: {environment: prod}\n    mfa: maybe\n"
        "    require: [{group: owning-team}]\n" + GOOD_TAIL,
        5,
        "mfa must be true or false",
    ),
    (
        "version: 1\nrules:\n  - name: all\n    require: [{group: owning-team}]\n" + GOOD_TAIL,
        3,
        "matches everything, so the rules after it can never apply",
    ),
    (
        "version: 1\nrules:\n  - name: last\n    match: {environment: prod}\n    require: [{group: owning-team}]\n",
        3,
        "final rule 'last' must match everything",
    ),
    (
        "version: 1\nrules:\n  - name: x\n    match: {environment: prod}\n    require:\n      - group: owning-team\n"
        "      - group: owning-team\n" + GOOD_TAIL,
        7,
        "required twice",
    ),
    (
        "version: 1\nrules:\n  - name: default\n    match: {environment: prod}\n    require: [{group: owning-team}]\n"
        + GOOD_TAIL,
        7,
        "used twice (first on line 3)",
    ),
]


@pytest.mark.parametrize(("text", "line", "problem"), BAD_FILES)
def test_each_policy_error_names_the_file_and_the_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.line == line, str(caught.value)
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_a_missing_policy_file_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.yaml")


def test_a_bad_policy_file_stops_start_up(settings: Any, tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n")
    settings.EGRESS_APPROVAL_POLICY_FILE = bad
    with pytest.raises(ImproperlyConfigured, match=rf"{bad}:3: rule 'x' says nobody must approve"):
        apps.get_app_config("approvals").ready()


def test_the_revision_is_the_sha256_of_the_file_and_changes_with_it(tmp_path: Path) -> None:
    import hashlib

    text = DEFAULT.read_text()
    policy = parse_policy(text, path=DEFAULT)
    assert policy.revision == hashlib.sha256(text.encode()).hexdigest()
    assert parse_policy(text + "\n# reviewed\n", path=DEFAULT).revision != policy.revision


def facts(**overrides: Any) -> RequestFacts:
    values: dict[str, Any] = {
        "environment": "staging",
        "data_class": "internal",
        "risk_tier": "low",
        "purpose": "partner_api",
        "team": "payments",
        "wildcard": False,
    }
    values.update(overrides)
    return RequestFacts(**values)


@pytest.mark.parametrize(
    ("request_facts", "rule", "groups", "window", "mfa"),
    [
        (facts(), "default", [("owning-team", 1, False)], False, False),
        (facts(risk_tier="medium"), "default", [("owning-team", 1, False)], False, False),
        (facts(risk_tier="low", environment="prod"), "production", [("owning-team", 1, False)], True, False),
        (facts(risk_tier="medium", environment="prod"), "production", [("owning-team", 1, False)], True, False),
        (
            facts(risk_tier="high"),
            "high-risk",
            [("owning-team", 1, False), ("security-officers", 1, True)],
            False,
            True,
        ),
        (
            facts(risk_tier="high", environment="prod", wildcard=True),
            "high-risk-production",
            [("owning-team", 1, False), ("security-officers", 1, True)],
            True,
            True,
        ),
    ],
)
def test_default_policy_rules_as_a_table(
    request_facts: RequestFacts, rule: str, groups: list[tuple[str, int, bool]], window: bool, mfa: bool
) -> None:
    matched = load_policy(DEFAULT).rule_for(request_facts)
    assert matched.name == rule
    assert [(r.group, r.count, r.outside_team) for r in matched.requires] == groups
    assert (matched.change_window, matched.mfa) == (window, mfa)


CUSTOM = """
version: 1
rules:
  - name: wildcards-of-platform
    match: {wildcard: true, team: platform}
    require: [{group: platform-leads, count: 2}]
    outside_team: true
  - name: telemetry-or-diagnostics
    match:
      purpose: [telemetry, diagnostics]
      data_class: [public, internal]
    require: [{group: owning-team}]
    max_lifetime: 36h
  - name: default
    require: [{group: owning-team}]
"""


@pytest.mark.parametrize(
    ("request_facts", "rule"),
    [
        (facts(team="platform", wildcard=True), "wildcards-of-platform"),
        (facts(team="platform", wildcard=False), "default"),
        (facts(team="payments", wildcard=True), "default"),
        (facts(purpose="telemetry"), "telemetry-or-diagnostics"),
        (facts(purpose="diagnostics", data_class="public"), "telemetry-or-diagnostics"),
        (facts(purpose="diagnostics", data_class="confidential"), "default"),
        (facts(team="platform", wildcard=True, purpose="telemetry"), "wildcards-of-platform"),
    ],
)
def test_first_match_wins_on_team_wildcard_purpose_and_data_class(request_facts: RequestFacts, rule: str) -> None:
    policy = parse_policy(CUSTOM, path="custom.yaml")
    assert policy.rule_for(request_facts).name == rule


def test_rule_options_are_read() -> None:
    policy = parse_policy(CUSTOM, path="custom.yaml")
    leads, telemetry, _ = policy.rules
    assert leads.requires[0].count == 2 and leads.requires[0].outside_team
    assert telemetry.max_lifetime == timedelta(hours=36)
    assert "purpose is diagnostics or telemetry" in telemetry.why()


@pytest.mark.django_db
def test_policy_page_shows_the_revision_and_rules(client: Client, requester: Any) -> None:
    client.force_login(requester)
    page = client.get("/approvals/policy/").content.decode()
    assert current_policy().revision in page
    assert "high-risk-production" in page and "1 member of security-officers from outside the requesting team" in page


def test_production_start_up_fails_on_a_bad_policy_file_naming_file_and_line(tmp_path: Path) -> None:
    from tests.test_deployment import _manage, _production_env

    bad = tmp_path / "approvals.yaml"
    bad.write_text(
        "version: 1\nrules:\n  - name: default\n    require:\n      - group: owning-team\n        count: -1\n"
    )
    result = _manage("check", env={**_production_env(tmp_path), "EGRESS_APPROVAL_POLICY_FILE": str(bad)})
    assert result.returncode != 0
    assert f"Approval policy: {bad}:6: count must be a whole number of at least 1" in result.stderr


def test_a_policy_broken_while_running_keeps_the_last_good_revision(settings: Any, tmp_path: Path) -> None:
    import os

    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT.read_text())
    settings.EGRESS_APPROVAL_POLICY_FILE = path
    good = current_policy()
    path.write_text("version: 1\nrules: nope\n")
    os.utime(path, (good_time := path.stat().st_mtime + 5, good_time))
    assert current_policy().revision == good.revision
    path.write_text(DEFAULT.read_text() + "\n# reviewed change\n")
    os.utime(path, (good_time + 5, good_time + 5))
    assert current_policy().revision != good.revision
