"""Settings are grouped by topic and each name is assigned once per file.

A second assignment further down a settings file silently overrides the
first (three names were assigned twice before settings were grouped by
topic); a dictionary key set again after the literal that defined it does
the same. The check reads each settings module's source, so it catches the
mistake whatever the values are.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

SETTINGS_DIR = Path(__file__).resolve().parent.parent / "egress_portal" / "settings"
SETTINGS_FILES = sorted(p for p in SETTINGS_DIR.glob("*.py") if p.name not in {"__init__.py", "env.py"})


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
        key = target.slice
        if isinstance(key, ast.Constant):
            return [f"{target.value.id}[{key.value!r}]"]
        if isinstance(key, ast.Name):
            return [f"{target.value.id}[{key.id}]"]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _target_names(element)]
    return []


def _dict_keys(name: str, value: ast.expr | None) -> list[str]:
    """The keys a dict literal assigns (``NAME['key']``), so setting one again later counts twice."""
    if not isinstance(value, ast.Dict):
        return []
    keys = []
    for key in value.keys:
        if isinstance(key, ast.Constant):
            keys.append(f"{name}[{key.value!r}]")
        elif isinstance(key, ast.Name):
            keys.append(f"{name}[{key.id}]")
    return keys


def assignments(statements: list[ast.stmt]) -> Counter[str]:
    """How many times each module-level name (and dict key) is assigned; exclusive branches count once."""
    counts: Counter[str] = Counter()
    for statement in statements:
        if isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                for name in _target_names(target):
                    counts[name] += 1
                    counts.update(_dict_keys(name, statement.value))
        elif isinstance(statement, ast.If):
            body, orelse = assignments(statement.body), assignments(statement.orelse)
            for name in body.keys() | orelse.keys():
                counts[name] += max(body[name], orelse[name])
        elif isinstance(statement, ast.For | ast.With | ast.Try):
            counts.update(assignments(statement.body))
    return counts


def twice_assigned(source: str) -> list[str]:
    return sorted(name for name, count in assignments(ast.parse(source).body).items() if count > 1)


@pytest.mark.parametrize("path", SETTINGS_FILES, ids=lambda p: p.name)
def test_each_setting_is_assigned_once_per_file(path: Path) -> None:
    assert twice_assigned(path.read_text()) == []


def test_the_check_finds_a_name_assigned_twice_and_a_key_set_again() -> None:
    source = (
        "A = 1\n"
        "B = {'x': 1}\n"
        "if cond:\n    C = 1\nelse:\n    C = 2\n"  # exclusive branches: once
        "A = 2\n"  # again: found
        "B['x'] = 3\n"  # a key of the literal again: found
        "B['y'] = 4\n"  # a new key: fine
        "D: int = 1\nD += 1\n"  # augmented: found
    )
    assert twice_assigned(source) == ["A", "B['x']", "D"]


def test_each_topic_block_says_what_it_is_for() -> None:
    """Every block header in base.py carries a description, not an issue number."""
    headers = [line for line in (SETTINGS_DIR / "base.py").read_text().splitlines() if line.startswith("# ---")]
    assert len(headers) >= 15
    for header in headers:
        title = header.strip("# -")
        assert title and "Issue" not in title, header
