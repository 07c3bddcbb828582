"""The compiler package imports no Django: it runs without settings or a database."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import bundle

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_of_the_bundle_package_imports_django() -> None:
    # Every module, the emitters' subpackage included (an engine added there is pure too).
    modules = [m.name for m in pkgutil.walk_packages(bundle.__path__, "bundle.")]
    assert {"bundle.compiler", "bundle.policy_repository"} <= set(modules)
    assert {"bundle.emitters.base", "bundle.emitters.opa"} <= set(modules)
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print(','.join(leaked))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"Django imported by the bundle package: {result.stdout}"
