"""A fresh clone runs and tests without leftovers: caches, var/, broker folders."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache


@pytest.mark.parametrize("order", [1, 2])
def test_each_test_starts_with_an_empty_cache(order: int) -> None:
    # Whichever of the two runs second would see the first one's value.
    assert cache.get("tests:leftover") is None
    cache.set("tests:leftover", order)


def test_the_filesystem_broker_keeps_its_control_folder_under_var() -> None:
    from egress_portal.settings import base

    if base.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = base.CELERY_BROKER_TRANSPORT_OPTIONS["control_folder"]
        assert str(folder).startswith(str(settings.VAR_DIR))


def test_the_base_url_follows_the_host_and_port_by_default() -> None:
    import subprocess
    import sys

    code = "from egress_portal.settings import base; print(base.EGRESS_BASE_URL)"
    env = {"PATH": "/usr/bin:/bin", "EGRESS_HOST": "portal.lan", "EGRESS_PORT": "8123"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "http://portal.lan:8123"
    env["EGRESS_BASE_URL"] = "https://egress.example.org"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "https://egress.example.org"


def test_sending_a_task_on_the_filesystem_broker_writes_only_under_var(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent.parent
    code = (
        "import django; django.setup();"
        "from egress_portal.celery import app;"
        "app.send_task('exceptions.publish_bundle', kwargs={'trigger': 'test'})"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(root),
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.local",
        "EGRESS_VAR_DIR": str(tmp_path / "var"),
    }
    work = tmp_path / "checkout"
    work.mkdir()
    result = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert list(work.iterdir()) == []
    assert (tmp_path / "var" / "celery" / "control").is_dir()
