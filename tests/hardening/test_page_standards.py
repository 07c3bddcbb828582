"""Page standards checked without a browser: badge contrast, the production CSP,
aria-describedby on server-rendered errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from foundation.encryption import new_key
from foundation.signing import generate_key_file

ROOT = Path(__file__).resolve().parent.parent.parent
CSS = (ROOT / "static" / "portal.css").read_text()


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    high, low = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _colour(value: str, variables: dict[str, str]) -> str:
    value = value.strip()
    found = re.fullmatch(r"var\((--[\w-]+)\)", value)
    return (variables[found.group(1)] if found else value).lstrip("#")


def badge_colours() -> list[tuple[str, str, str]]:
    """(selector, text, background) for every status and tier badge rule in portal.css."""
    variables = dict(re.findall(r"(--[\w-]+):\s*(#[0-9a-fA-F]{6})", CSS))
    badges = []
    base_background = re.search(r"\.status, \.tier \{[^}]*background:(#[0-9a-fA-F]{6})", CSS)
    assert base_background is not None
    for selector, body in re.findall(r"((?:\.(?:status|tier)-[\w-]+(?:, )?)+) \{([^}]*)\}", CSS):
        background = re.search(r"background:([^;]+);", body)
        text = re.search(r"(?<![-\w])color:([^;]+);", body)
        badges.append(
            (
                selector,
                _colour(text.group(1) if text else "var(--ink)", variables),
                _colour(background.group(1) if background else base_background.group(1), variables),
            )
        )
    return badges


def test_there_are_badges_to_check() -> None:
    assert len(badge_colours()) >= 6


@pytest.mark.parametrize(("selector", "text", "background"), badge_colours())
def test_badge_colours_reach_4_5_to_1(selector: str, text: str, background: str) -> None:
    assert contrast(text, background) >= 4.5, selector


def test_production_sends_a_csp_without_inline_scripts(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings;"
        "print('csp.middleware.CSPMiddleware' in settings.MIDDLEWARE);"
        "print(settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['script-src'])"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.production",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "egress.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db'}",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "METRICS_TOKEN": "t",
        "EGRESS_SIGNING_KEY_FILE": str(tmp_path / "signing-key.pem"),
        "EGRESS_AUDIT_KEY": "a" * 43,
        "EGRESS_VAR_DIR": str(tmp_path),
        "EGRESS_SECRETS_KEY": new_key(),
    }
    generate_key_file(tmp_path / "signing-key.pem")
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.split("\n")[:2] == ["True", "[\"'self'\"]"], out.stderr


def test_no_template_has_an_inline_script_or_style() -> None:
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", text), template


@pytest.mark.django_db
def test_server_rendered_errors_are_described_by_ids_that_exist(client: Client, requester: Any, workload: Any) -> None:
    client.force_login(requester)
    body = client.post("/requests/new/", {"justification": "short"}).content.decode()
    ids = set(re.findall(r'\sid="([^"]+)"', body))
    described = [i for value in re.findall(r'aria-describedby="([^"]+)"', body) for i in value.split()]
    assert described and all(i in ids for i in described), set(described) - ids
    assert 'aria-invalid="true"' in body
