"""/audit/objects/<type>/<id>/ answers any path value without a 500, on PostgreSQL (issue 17 §5)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ODD_VALUES = [
    "9" * 19,  # just past bigint
    "9" * 400,  # far past any integer
    "1" * 5000,  # a very long id
    "-1",
    "0",
    "1e3",
    "0x10",
    " 1",
    "٤٤٣",  # Arabic-Indic digits: isdigit() but not an id
    "²",
    "\uff11\uff12",  # full-width digits
    "%25FF%25FE",  # percent-encoded percent-encoding
    "%FF%FE",  # bytes that are not UTF-8
    "%ED%A0%80",  # an encoded UTF-16 surrogate
    "%C0%AF",  # overlong "/"
    "%E2%80%AE",  # right-to-left override
    "%F0%9F%92%A9",  # astral-plane character
    "é" * 300,
    "'; SELECT 1 --",
    "%5C",
    "..",
    "%09",
]


@pytest.mark.parametrize("value", ODD_VALUES)
@pytest.mark.parametrize("slot", ["type", "id"])
def test_no_path_value_makes_the_object_history_a_500(client: Client, auditor: Any, value: str, slot: str) -> None:
    client.force_login(auditor)
    known_type, known_id = "exceptions.grant", "1"
    path = f"/audit/objects/{value}/{known_id}/" if slot == "type" else f"/audit/objects/{known_type}/{value}/"
    response = client.get(path)
    assert response.status_code in {400, 404}, (path, response.status_code)
