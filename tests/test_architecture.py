"""The layers of .importlinter hold, and breaking them is caught.

`make lint` runs `lint-imports`; these tests run the same contracts on the
real import graph inside the suite, and show that an upward import or a new
circle would fail them (each by adding one import to a copy of the graph).
They also list imports of the portal's own modules placed inside functions:
such an import usually hides a circle ("the arrow points the wrong way"),
so each one left is named here with the reason it is not one.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.application import use_cases
from importlinter.configuration import configure
from importlinter.domain.contract import registry

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"


@pytest.fixture(scope="module")
def linter() -> tuple[Any, list[dict[str, Any]], Any]:
    configure()
    options = use_cases.read_user_options(str(CONFIG))
    use_cases._register_built_in_contract_types()
    graph = grimp.build_graph(*options.session_options["root_packages"], include_external_packages=True, cache_dir=None)
    return options, options.contracts_options, graph


def broken(linter: tuple[Any, list[dict[str, Any]], Any], *, add: tuple[str, str] | None = None) -> list[str]:
    """Names of the contracts that fail on the graph (plus one added import)."""
    options, contracts, graph = linter
    graph = copy.deepcopy(graph)
    if add is not None:
        graph.add_import(importer=add[0], imported=add[1], line_number=1, line_contents=f"import {add[1]}")
    failed = []
    for contract_options in contracts:
        contract_class = registry.get_contract_class(contract_options["type"])
        contract = contract_class(
            name=contract_options["name"], session_options=options.session_options, contract_options=contract_options
        )
        if not contract.check(copy.deepcopy(graph), verbose=False).kept:
            failed.append(contract_options["type"])
    return sorted(failed)


def test_every_contract_holds_on_the_code(linter: Any) -> None:
    assert broken(linter) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("exceptions.services.requests", "approvals.notifications"),  # the core telling approvers directly
        ("exceptions.services.publications", "outcomes.policy_update"),  # the core observing its own metric
        ("foundation.outbox.relay", "audit.services"),  # a building block writing audit events
        ("audit.selectors", "traffic.models"),  # the audit viewer reading gateways itself
        ("traffic.services.ingest", "outcomes.policy_update"),  # ingestion observing the metric
        ("approvals.services", "webhooks.events"),  # a decision queuing deliveries itself
        ("bundle.compiler", "django.db"),  # the pure compiler touching Django
        ("bundle.records", "exceptions.models"),  # the pure compiler reading the database
        ("audit.checkpoint_git", "exceptions.services.publications"),  # audit reaching into the core
    ],
)
def test_an_import_up_a_layer_fails(linter: Any, importer: str, imported: str) -> None:
    assert broken(linter, add=(importer, imported)) != []


def test_a_circle_inside_an_app_fails(linter: Any) -> None:
    # audit.checkpoints imports audit.verification; the way back closes a circle.
    assert broken(linter, add=("audit.verification", "audit.checkpoints")) == ["acyclic_siblings"]


def test_a_circle_between_sibling_apps_fails(linter: Any) -> None:
    assert "layers" in broken(linter, add=("traffic.selectors", "webhooks.models"))


FIRST_PARTY = {
    "bundle",
    "egress_portal",
    "foundation",
    "audit",
    "exceptions",
    "approvals",
    "traffic",
    "webhooks",
    "outcomes",
}
# Imports of the portal's own modules inside functions, each with why it is not a hidden circle.
ALLOWED_LOCAL_IMPORTS = {
    # pygit2 and GitPython load only when a checkpoint is signed or read (start-up memory; tests/audit).
    ("audit/checkpoints.py", "audit.checkpoint_git"): "loads git libraries lazily",
    ("egress_portal/health.py", "audit.checkpoint_git"): "loads git libraries lazily",
    # The project shell: models are not ready when these modules are imported by settings or Celery.
    ("egress_portal/health.py", "exceptions.models"): "imported before the app registry is ready",
    ("egress_portal/health.py", "foundation.outbox.models"): "imported before the app registry is ready",
    ("egress_portal/celery.py", "traffic.jobs"): "the Celery app is imported before Django is set up",
    ("egress_portal/middleware.py", "foundation.problems"): "DRF loads only for API errors",
    ("egress_portal/middleware.py", "exceptions.state"): "imported before the app registry is ready",
    ("egress_portal/api_schema.py", "exceptions.api.serializers"): "loaded by drf-spectacular settings",
    # Celery tasks are imported where a page queues them, so a web process does not load every task module.
    ("traffic/views.py", "traffic.tasks"): "a task module, loaded when the sweep is queued",
}


def local_first_party_imports() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {".venv", "tests", "bench", "var", "tools", "docs"} or "migrations" in relative.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name == "ready":
                continue  # AppConfig.ready is where an app registers its hooks: imports there are the point
            for inner in ast.walk(node):
                module = inner.module if isinstance(inner, ast.ImportFrom) else None
                if isinstance(inner, ast.Import):
                    module = inner.names[0].name
                if module and module.split(".")[0] in FIRST_PARTY:
                    found.add((relative.as_posix(), module))
    return found


def test_no_import_of_the_portal_hides_inside_a_function() -> None:
    unexplained = local_first_party_imports() - ALLOWED_LOCAL_IMPORTS.keys()
    assert unexplained == set(), (
        "An import inside a function usually dodges a circle: import at the top, or have the upper "
        "layer register a hook (exceptions/hooks.py); if it is for another reason, name it here."
    )
