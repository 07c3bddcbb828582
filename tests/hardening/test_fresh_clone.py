"""A fresh clone runs and tests without leftovers: caches, var/, broker folders."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from bundle.compiler import compile_bundle
from bundle.content_key import content_revision
from bundle.records import BundleOptions, GrantRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _record(**overrides: Any) -> GrantRecord:
    values: dict[str, Any] = {
        "id": 1,
        "identity": "spiffe://cluster.local/ns/a/sa/b",
        "host": "api.partner.example",
        "port": 443,
        "protocol": "tcp",
        "valid_from": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(days=1),
    }
    values.update(overrides)
    return GrantRecord(**values)


OPTIONS = BundleOptions()


def test_archive_cache_key_is_the_content_not_the_ids() -> None:
    # SQLite reuses a rolled-back id: same id, different grant, different bundle.
    key = partial(content_revision, now=NOW, options=OPTIONS)
    assert key([_record()]) != key([_record(host="other.example")])
    assert key([_record()]) == key([_record()])


def test_archive_cache_key_changes_when_a_grant_becomes_valid_or_expires() -> None:
    scheduled = _record(valid_from=NOW + timedelta(hours=1))
    assert content_revision([scheduled], now=NOW, options=OPTIONS) != content_revision(
        [scheduled], now=NOW + timedelta(hours=2), options=OPTIONS
    )
    later = content_revision([_record()], now=NOW + timedelta(days=2), options=OPTIONS)
    assert later == content_revision([], now=NOW, options=OPTIONS)


@pytest.mark.parametrize("field", [f.name for f in fields(GrantRecord)])
def test_archive_cache_key_changes_with_every_field_of_a_grant(field: str) -> None:
    record = _record(cidrs=("3.5.64.0/21",))
    value = getattr(record, field)
    change = {
        bool: lambda: not value,
        int: lambda: value + 1,
        str: lambda: value + "x",
        tuple: lambda: (*value, "x"),
        datetime: lambda: value - timedelta(microseconds=1),
    }[type(value)]
    assert content_revision([record], now=NOW, options=OPTIONS) != content_revision(
        [replace(record, **{field: change()})], now=NOW, options=OPTIONS
    )


TEXTS = st.lists(st.text(st.sampled_from(["a", "\0", "S", "L", "/", "0", "é"]), max_size=4), max_size=4)


@examples(max_examples=500, deadline=None)
@given(first=TEXTS, second=TEXTS)
def test_the_key_encodes_a_string_column_exactly(first: list[str], second: list[str]) -> None:
    from bundle.content_key import _strings

    assert (_strings(first) == _strings(second)) == (first == second)


STATE = st.lists(
    st.builds(
        _record,
        id=st.integers(1, 3),
        host=st.sampled_from(["a.example", "b.example", "a.exampl", "e.a.example"]),
        identity=st.sampled_from(["spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/a/sa/bb"]),
        port=st.sampled_from([443, 8443]),
        valid_from=st.sampled_from([NOW - timedelta(hours=1), NOW + timedelta(hours=1)]),
        expires_at=st.sampled_from([NOW, NOW + timedelta(hours=2)]),
        namespace=st.sampled_from(["", "a"]),
        service_account=st.sampled_from(["b", "bb"]),
        team=st.sampled_from(["", "t"]),
    ),
    max_size=3,
    unique_by=lambda r: r.id,
)


@examples(max_examples=300, deadline=None)
@given(first=STATE, second=STATE, later=st.booleans())
def test_two_states_with_the_same_archive_key_compile_to_the_same_bytes(
    first: list[GrantRecord], second: list[GrantRecord], later: bool
) -> None:
    other_now = NOW + timedelta(minutes=90) if later else NOW
    # Equal bytes under different keys only cost a cache miss; the converse would serve a wrong bundle.
    if content_revision(first, now=NOW, options=OPTIONS) == content_revision(second, now=other_now, options=OPTIONS):
        assert compile_bundle(first, now=NOW).files == compile_bundle(second, now=other_now).files


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
