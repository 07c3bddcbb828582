"""A process that exports the audit chain loads none of the heavy libraries it does not use.

Issue 12's budget is 100 MB for a 1,000,000-event export, and Django's start-up
is most of it: git (pygit2, GitPython), signing (jwcrypto with cryptography's
Rust bindings) and the Unicode confusables tables load where they are used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pygit2", "git", "jwcrypto", "cryptography", "confusable_homoglyphs", "hypothesis")


def test_django_start_up_and_the_export_modules_leave_the_heavy_libraries_unloaded() -> None:
    script = (
        "import sys, django\n"
        "django.setup()\n"
        "import audit.exports, audit.checkpoints, exceptions.validators, foundation.signing\n"
        f"print('loaded=' + ','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "egress_portal.settings.test"},
    )
    assert result.returncode == 0, result.stderr
    [loaded] = [line for line in result.stdout.splitlines() if line.startswith("loaded=")]
    assert loaded == "loaded=", f"loaded at start-up: {loaded.removeprefix('loaded=')}"
