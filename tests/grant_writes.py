"""A static scan for code that writes ``Grant.status``, so exactly one module can.

It reads every project module (tests, migrations and benchmark seeding left
out) with ``ast`` and reports each place that could change a grant's status:

- an assignment to ``<grant>.status`` (plain, tuple, augmented or annotated),
  or to any ``.status`` whose value names ``GrantStatus``;
- ``setattr(<grant>, "status", ...)``, or ``setattr(<grant>, <a variable>, ...)``;
- ``.update(status=...)``, ``.create/get_or_create/update_or_create(...)`` with a
  status (or ``defaults={"status": ...}``), or any ``**`` expansion, on a grant
  queryset or manager; any ``bulk_create`` on one, and ``bulk_update`` naming
  ``"status"`` (or fields it cannot read);
- ``Grant(...)``: the model has no default status, so every new grant gets one;
- SQL text that updates ``status`` or inserts into the grant table, in a function
  that names ``Grant``.

"A grant" is an expression rooted at the ``Grant`` model, at a name whose words
include grant/grants (``grant``, ``old_grant``, ``request.grants``), or at a
local name assigned from such an expression (``locked = Grant.objects...get()``)
or looping over one. Call arguments do not count: ``StaleNotice.objects.filter(
grant=grant).update(status=...)`` writes a notice, not a grant.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The one module allowed to write a grant's status.
WRITER = "exceptions/services/lifecycle.py"
# Not product code: tests and benchmark seeding write rows directly on purpose,
# migrations are history (their backfills run once, on historical models).
SKIPPED_PARTS = frozenset({"tests", "migrations", "bench", ".venv", "node_modules", ".git", "static", "templates"})

_WRITE_METHODS = frozenset({"update", "create", "get_or_create", "update_or_create"})
_SQL_UPDATE_STATUS = re.compile(r"\bupdate\b.*\bset\b.*\bstatus\b", re.IGNORECASE | re.DOTALL)
_SQL_INSERT_GRANT = re.compile(r"\binsert\s+into\s+\"?exceptions_grant\"?", re.IGNORECASE)


@dataclass(frozen=True)
class Write:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _is_grant_word(name: str) -> bool:
    if name == "Grant":
        return True
    return any(word in {"grant", "grants"} for word in name.lower().split("_"))


def _names_grant_status(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "GrantStatus" for n in ast.walk(node))


def _names_grant_model(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "Grant" for n in ast.walk(node))


def _strings(node: ast.AST) -> Iterator[str]:
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            yield n.value
        elif isinstance(n, ast.JoinedStr):
            yield "".join(v.value for v in n.values if isinstance(v, ast.Constant) and isinstance(v.value, str))


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.writes: list[Write] = []
        self.scopes: list[set[str]] = [set()]

    # --- what counts as a grant ------------------------------------------------------

    def _is_grant(self, node: ast.AST) -> bool:
        """The receiver chain (attributes, calls, subscripts) down to its root, arguments excluded."""
        while True:
            if isinstance(node, ast.Attribute):
                if _is_grant_word(node.attr):
                    return True
                node = node.value
            elif isinstance(node, ast.Call):
                node = node.func
            elif isinstance(node, ast.Subscript):
                node = node.value
            elif isinstance(node, ast.Name):
                return _is_grant_word(node.id) or any(node.id in scope for scope in self.scopes)
            else:
                return False

    def _bind(self, target: ast.AST, value: ast.AST | None) -> None:
        if value is None:
            return
        grant = self._is_grant(value) or (
            isinstance(value, ast.ListComp | ast.GeneratorExp | ast.SetComp) and self._is_grant(value.elt)
        )
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in {"list", "sorted"}:
            grant = grant or any(self._is_grant(a) for a in value.args)
        if not grant:
            return
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                self.scopes[-1].add(node.id)

    def _flag(self, node: ast.AST, what: str) -> None:
        self.writes.append(Write(self.path, getattr(node, "lineno", 0), what))

    # --- scopes ---------------------------------------------------------------------

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(set())
        if _names_grant_model(node):
            for text in _strings(node):
                if _SQL_UPDATE_STATUS.search(text) or _SQL_INSERT_GRANT.search(text):
                    self._flag(node, f"SQL writing grant status in {node.name}(): {text.strip()[:60]!r}")
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_For(self, node: ast.For) -> None:
        self._bind(node.target, node.iter)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self._bind(node.target, node.iter)
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._bind(item.optional_vars, item.context_expr)
        self.generic_visit(node)

    # --- assignments ------------------------------------------------------------------

    def _check_targets(self, targets: list[ast.expr], value: ast.AST | None) -> None:
        grant_value = value is not None and _names_grant_status(value)
        for target in targets:
            for node in ast.walk(target):
                writes_status = (
                    isinstance(node, ast.Attribute) and node.attr == "status" and isinstance(node.ctx, ast.Store)
                )
                if writes_status and (grant_value or self._is_grant(node.value)):
                    self._flag(node, f"assignment to {ast.unparse(node)}")

    def visit_Assign(self, node: ast.Assign) -> None:
        self._check_targets(node.targets, node.value)
        for target in node.targets:
            self._bind(target, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_targets([node.target], node.value)
        self._bind(node.target, node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_targets([node.target], node.value)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._bind(node.target, node.value)
        self.generic_visit(node)

    # --- calls ----------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (isinstance(func, ast.Name) and func.id == "Grant") or (
            isinstance(func, ast.Attribute) and func.attr == "Grant"
        ):
            self._flag(node, "Grant(...) built with a status")
        elif isinstance(func, ast.Name) and func.id == "setattr" and len(node.args) >= 2:
            obj, name = node.args[0], node.args[1]
            named_status = isinstance(name, ast.Constant) and name.value == "status"
            unknown_name = not isinstance(name, ast.Constant)
            value_is_status = len(node.args) > 2 and _names_grant_status(node.args[2])
            if (self._is_grant(obj) and (named_status or unknown_name)) or (named_status and value_is_status):
                self._flag(node, f"setattr({ast.unparse(obj)}, {ast.unparse(name)}, ...)")
        elif isinstance(func, ast.Attribute):
            self._check_method(node, func)
        self.generic_visit(node)

    def _check_method(self, node: ast.Call, func: ast.Attribute) -> None:
        method, receiver = func.attr, func.value
        grant = self._is_grant(receiver)
        if method in _WRITE_METHODS:
            status_kw = [k for k in node.keywords if k.arg == "status"]
            splats = [k for k in node.keywords if k.arg is None]
            defaults = [
                k.value
                for k in node.keywords
                if k.arg in {"defaults", "create_defaults"}
                and (
                    not isinstance(k.value, ast.Dict)
                    or any(isinstance(key, ast.Constant) and key.value == "status" for key in k.value.keys)
                )
            ]
            if grant and method != "update":
                self._flag(node, f"{ast.unparse(receiver)}.{method}(...) may create a grant (with a status)")
            elif grant and (status_kw or splats or defaults):
                self._flag(node, f"{ast.unparse(receiver)}.{method}(status=...)")
            elif any(_names_grant_status(k.value) for k in status_kw):
                self._flag(node, f"{ast.unparse(receiver)}.{method}(status=GrantStatus...)")
        elif method == "bulk_create" and grant:
            self._flag(node, f"{ast.unparse(receiver)}.bulk_create(...) creates grants (with a status)")
        elif method == "bulk_update" and grant:
            fields = (
                node.args[1]
                if len(node.args) > 1
                else next((k.value for k in node.keywords if k.arg == "fields"), None)
            )
            known = isinstance(fields, ast.List | ast.Tuple | ast.Set) and all(
                isinstance(e, ast.Constant) for e in fields.elts
            )
            if not known or any(e.value == "status" for e in fields.elts):  # type: ignore[union-attr]
                self._flag(node, f"{ast.unparse(receiver)}.bulk_update(..., status)")


def scan_source(source: str, path: str = "<snippet>") -> list[Write]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.writes


def project_modules(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if not SKIPPED_PARTS.intersection(p.relative_to(root).parts[:-1]))


def scan_project(root: Path = ROOT) -> list[Write]:
    writes: list[Write] = []
    for path in project_modules(root):
        writes += scan_source(path.read_text(), str(path.relative_to(root)))
    return writes
