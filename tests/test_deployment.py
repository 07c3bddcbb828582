"""The two commands' building blocks and the production configuration."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from audit.verification import verify_chain
from exceptions.models import ExceptionRequest, Grant
from foundation.encryption import new_key
from foundation.signing import generate_key_file

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "SECRET_KEY",
            "DJANGO_SETTINGS_MODULE",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
            "EGRESS_SIGNING_KEY",
            "EGRESS_SIGNING_KEY_FILE",
            "EGRESS_SECRETS_KEY",
            "EGRESS_SECRETS_KEY_FILE",
            "EGRESS_SECRETS_KEY_RETIRED",
            "EGRESS_AUDIT_KEY",
            "EGRESS_AUDIT_KEY_FILE",
        }
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _production_env(tmp_path: Path) -> dict[str, str]:
    secret_file = tmp_path / "secret"
    secret_file.write_text(secrets.token_urlsafe(50))
    signing_key = tmp_path / "signing-key.pem"
    generate_key_file(signing_key)
    return {
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.production",
        "SECRET_KEY_FILE": str(secret_file),
        "EGRESS_SIGNING_KEY_FILE": str(signing_key),
        "ALLOWED_HOSTS": "egress.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "EGRESS_VAR_DIR": str(tmp_path),
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        "EGRESS_SECRETS_KEY": new_key(),
        "EGRESS_AUDIT_KEY": secrets.token_urlsafe(32),
    }


def test_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("variable", "name"),
    [
        ("SECRET_KEY_FILE", "SECRET_KEY"),
        ("METRICS_TOKEN", "METRICS_TOKEN"),
        ("EGRESS_SECRETS_KEY", "EGRESS_SECRETS_KEY"),
        ("EGRESS_AUDIT_KEY", "EGRESS_AUDIT_KEY"),
    ],
)
def test_production_refuses_to_start_without_a_secret(tmp_path: Path, variable: str, name: str) -> None:
    env = _production_env(tmp_path)
    del env[variable]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert f"{name} (or {name}_FILE) must be set" in result.stderr


def test_production_refuses_to_start_without_a_bundle_signing_key(tmp_path: Path) -> None:
    env = _production_env(tmp_path)
    del env["EGRESS_SIGNING_KEY_FILE"]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "EGRESS_SIGNING_KEY (or EGRESS_SIGNING_KEY_FILE) must be set" in result.stderr


def test_production_refuses_a_secrets_key_that_is_not_a_fernet_key(tmp_path: Path) -> None:
    env = _production_env(tmp_path) | {"EGRESS_SECRETS_KEY": "correct horse battery staple"}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "EGRESS_SECRETS_KEY is not url-safe base64" in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [("short", "EGRESS_AUDIT_KEY is 5 characters"), ("-----BEGIN PRIVATE KEY-----\nx" + "y" * 40, "holds a PEM key")],
)
def test_production_refuses_an_audit_key_it_could_not_seal_with_at_start(
    tmp_path: Path, value: str, message: str
) -> None:
    result = _manage("check", env=_production_env(tmp_path) | {"EGRESS_AUDIT_KEY": value})
    assert result.returncode != 0
    assert message in result.stderr


def test_production_writes_no_key_into_var(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = _production_env(tmp_path) | {"EGRESS_VAR_DIR": str(var)}
    assert _manage("check", env=env).returncode == 0
    del env["EGRESS_SIGNING_KEY_FILE"], env["EGRESS_SECRETS_KEY"]
    assert _manage("check", env=env).returncode != 0
    assert not var.exists()


@pytest.mark.compose
def test_docker_compose_file_is_valid() -> None:
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = subprocess.run(
        ["docker-compose", "config", "--services"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert set(services.split()) >= {"postgres", "redis", "web", "worker", "beat"}
    resolved = subprocess.run(["docker-compose", "config"], cwd=ROOT, capture_output=True, text=True).stdout
    assert str(yaml.safe_load(resolved)["services"]["web"]["environment"]["TRUSTED_PROXY_COUNT"]) == "0"


PROXY_IMAGES = ("nginx", "traefik", "caddy", "haproxy", "envoy", "httpd")


def test_docker_compose_trusts_as_many_forwarding_hops_as_it_runs_proxies() -> None:
    """The per-address login lockout reads the client address through TRUSTED_PROXY_COUNT:
    the compose file must state it, and it must match the proxies the file runs."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    proxies = [name for name, svc in services.items() if str(svc.get("image", "")).startswith(PROXY_IMAGES)]
    assert "ports" in services["web"] and not proxies  # gunicorn is published as it is
    for name in ("web", "worker", "beat"):
        environment = services[name]["environment"]
        assert environment.get("TRUSTED_PROXY_COUNT") == f"${{TRUSTED_PROXY_COUNT:-{len(proxies)}}}", name


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_covers_every_state(settings: object, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("seed_demo", stdout=out)
    first_requests, first_grants = ExceptionRequest.objects.count(), Grant.objects.count()
    call_command("seed_demo", stdout=out)
    assert (ExceptionRequest.objects.count(), Grant.objects.count()) == (first_requests, first_grants)
    states = set(ExceptionRequest.objects.values_list("status", flat=True))
    assert states == {"draft", "pending", "approved", "active", "expired", "revoked", "rejected", "cancelled"}
    assert Grant.objects.filter(status="active", host__startswith="*.").exists()
    assert Grant.objects.filter(status="active").exclude(host__startswith="*.").exists()
    for name in ("requester", "approver", "security", "auditor", "admin"):
        assert name in out.getvalue()
    assert verify_chain().ok


@pytest.mark.django_db
def test_healthz(client: object) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_the_image_build_step_collects_static_files_without_any_secret() -> None:
    """The Dockerfile's collectstatic runs as written, with no secret in the environment (none is in an image)."""
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    image_env = dict(word.split("=", 1) for line in lines if line.startswith("ENV ") for word in line.split()[1:])
    step = next(line for line in lines if "collectstatic" in line)
    words = step.removeprefix("RUN ").split()
    assignments = image_env | dict(word.split("=", 1) for word in words if "=" in word and not word.startswith("-"))
    command = [word for word in words if "=" not in word or word.startswith("-")]
    assert command[:2] == ["python", "manage.py"], step
    result = _manage(*command[2:], env=assignments)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (ROOT / "staticfiles" / "staticfiles.json").exists()


def test_the_bundle_server_runs_beside_the_portal_in_compose_and_make_run() -> None:
    """OPA's polls have an async server of their own (long polls without a thread each), in the
    compose file and in the Procfile `make run` starts; the pages stay on gunicorn/runserver."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["bundles"]["command"][:2] == ["uvicorn", "egress_portal.asgi:bundles"]
    assert compose["web"]["command"][0] == "gunicorn"
    processes = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert "uvicorn egress_portal.asgi:bundles" in processes["bundles"]
    assert "uvicorn" in (ROOT / "requirements.txt").read_text()
