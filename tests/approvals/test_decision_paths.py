"""Every decision on a request passes through the decision gate (approvals/gate.py).

A static scan of the portal's modules finds each place that could record a
decision or move a request to a decided status, and shows that only the gate
does. Snippets prove the scan flags the shapes a new path would take.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "approvals",
    "audit",
    "bundle",
    "egress_portal",
    "exceptions",
    "foundation",
    "outcomes",
    "traffic",
    "webhooks",
)
GATE = "approvals/gate.py"
DECIDED = {"APPROVED", "ACTIVE", "REJECTED", "CHANGES_REQUESTED"}
# Not decisions: break-glass opens an active request of its own (MFA step-up, reviewed afterwards);
# filing creates a draft or a pending request (``status = DRAFT if draft else PENDING``).
ALLOWED = {
    ("approvals/breakglass.py", "ExceptionRequest.objects.create(status=ACTIVE)"),
    ("exceptions/services/requests.py", "ExceptionRequest.objects.create(status=?)"),
}
CREATE = {"create", "bulk_create", "get_or_create", "update_or_create"}


def _decided_status(node: ast.expr | None) -> str | None:
    """The decided status a node names (``RequestStatus.APPROVED``), '?' when it is not a literal, else None."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "RequestStatus":
        return node.attr if node.attr in DECIDED else None
    if isinstance(node, ast.Constant):
        return str(node.value).upper() if str(node.value).upper() in DECIDED else None
    return "?"


def decision_writes(source: str) -> list[str]:
    """Each call in ``source`` that records a decision or moves a request to a decided status."""
    tree = ast.parse(source)
    decision_models = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "approvals.models"
        for alias in node.names
        if alias.name == "Decision"
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        target = func.value if isinstance(func, ast.Attribute) else None
        manager_of = target.value.id if (
            isinstance(target, ast.Attribute) and target.attr == "objects" and isinstance(target.value, ast.Name)
        ) else None  # fmt: skip
        if isinstance(func, ast.Name) and func.id in decision_models:
            found.append("Decision(...)")
        elif isinstance(func, ast.Attribute) and func.attr in CREATE and manager_of in decision_models:
            found.append(f"Decision.objects.{func.attr}(...)")
        elif isinstance(func, ast.Attribute) and func.attr in CREATE and manager_of == "ExceptionRequest":
            status = next((k.value for k in node.keywords if k.arg == "status"), None)
            decided = _decided_status(status) if status is not None else None
            if decided:
                found.append(f"ExceptionRequest.objects.{func.attr}(status={decided})")
        elif isinstance(func, ast.Name) and func.id == "move_request" and len(node.args) >= 2:
            decided = _decided_status(node.args[1])
            if decided:
                found.append(f"move_request(..., {decided})")
    return found


def test_only_the_gate_records_decisions() -> None:
    outside: set[tuple[str, str]] = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative or relative == GATE:
                continue
            outside.update((relative, write) for write in decision_writes(path.read_text()))
    assert outside == ALLOWED
    assert decision_writes((ROOT / GATE).read_text()), "the gate itself must be seen writing decisions"


def test_the_scan_flags_each_shape_a_new_decision_path_would_take() -> None:
    header = "from approvals.models import Decision\nfrom approvals.models import Decision as D\n"
    flagged = [
        "Decision.objects.create(request=r, kind='approve')",
        "D.objects.bulk_create([x])",
        "Decision(request=r).save()",
        "move_request(locked, RequestStatus.APPROVED, now=now)",
        "move_request(locked, RequestStatus.REJECTED, now=now)",
        "move_request(locked, RequestStatus.CHANGES_REQUESTED, now=now)",
        "move_request(locked, 'approved', now=now)",
        "move_request(locked, target, now=now)",  # not a literal: could be anything
        "ExceptionRequest.objects.create(status=RequestStatus.ACTIVE)",
    ]
    for snippet in flagged:
        assert decision_writes(header + snippet), snippet
    allowed = [
        "move_request(locked, RequestStatus.PENDING, now=now)",
        "move_request(locked, RequestStatus.CANCELLED, now=now)",
        "ExceptionRequest.objects.create(status=RequestStatus.PENDING)",
        "Decision = namedtuple('Decision', 'allow reason')\nDecision(True, 'ok')",  # not the model
    ]
    for snippet in allowed:
        assert not decision_writes(snippet), snippet
