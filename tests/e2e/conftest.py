"""Headless Chromium for the browser tests (Playwright on /usr/bin/chromium, never a download)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.db import connections

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct-horse-battery"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # test makes around it are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            # Playwright's greenlet gives the test its own context, and with it
            # its own database connection: close it before the database is dropped.
            connections.close_all()
            chromium.close()


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)


def fresh_code(secret: str, used: set[int]) -> str:
    """A code of a time step not used yet: allauth refuses a code twice (replay protection)."""
    while (step := int(time.time()) // 30) in used:
        time.sleep(0.5)
    used.add(step)
    return format_hotp_value(hotp_value(secret, step))


def enrol_totp(page: Any) -> tuple[str, set[int]]:
    """Enrol an authenticator app from allauth's enrolment page, already open or on its way.

    allauth asks for the password first; returns the secret and the time steps used so far.
    """
    page.wait_for_url("**/accounts/reauthenticate/**")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url("**/2fa/totp/activate/**")
    secret = page.input_value("main input[disabled]")
    used: set[int] = set()
    page.fill("input[name=code]", fresh_code(secret, used))
    page.click("main button[type=submit]")
    page.wait_for_url(lambda url: "/totp/activate" not in url)
    return secret, used
