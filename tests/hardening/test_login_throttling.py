"""Failed logins are limited per account and per address; one attacked account
does not lock out the people behind the same address."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def attempt(client: Client, username: str, password: str) -> Any:
    return client.post("/accounts/login/", {"login": username, "password": password})


def test_an_attacked_account_is_locked_and_told_when_to_retry(client: Client, requester: Any) -> None:
    for _ in range(5):
        assert b"not correct" in attempt(client, "alice", "guess").content
    locked = attempt(client, "alice", "correct-horse-battery")
    assert locked.status_code == 200 and b"Try again in 5 minutes" in locked.content


def test_hammering_one_account_does_not_lock_out_others_at_the_same_address(
    client: Client, requester: Any, teammate: Any
) -> None:
    for _ in range(60):
        attempt(client, "alice", "guess")
    assert attempt(Client(), "dave", "correct-horse-battery").status_code == 302


def test_spraying_many_accounts_from_one_address_is_limited(client: Client, teammate: Any) -> None:
    for n in range(30):
        attempt(client, f"nobody{n}", "guess")
    assert b"Try again in 5 minutes" in attempt(client, "dave", "correct-horse-battery").content


def test_the_login_page_mentions_single_sign_on_only_when_configured(client: Client) -> None:
    body = client.get("/accounts/login/").content.decode().lower()
    assert "single sign-on" not in body
