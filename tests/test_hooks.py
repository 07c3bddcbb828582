"""The seams between layers (foundation/hooks.py): hooks run in order, observers never roll back the cause,
and a port has one answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, transaction

from approvals.port import ApprovalsAnswers
from audit.models import AuditChainHead
from exceptions import hooks as core_hooks
from foundation.hooks import Hook, Port


def test_a_hook_runs_every_registered_function_in_order_once() -> None:
    calls: list[str] = []
    hook: Hook[[str], str] = Hook("example")

    def first(value: str) -> str:
        calls.append(f"first {value}")
        return "a"

    def second(value: str) -> str:
        calls.append(f"second {value}")
        return "b"

    assert hook("x") == []  # nobody registered: the lower layer works alone
    hook.register(first)
    hook.register(second)
    hook.register(first)  # ready() may run twice
    assert hook("x") == ["a", "b"] and calls == ["first x", "second x"]


@pytest.mark.django_db(transaction=True)
def test_an_observer_that_fails_in_the_database_never_rolls_back_the_change_it_observes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook: Hook[[], None] = Hook("observed", observer=True)

    def broken() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_anywhere")

    hook.register(broken)
    with transaction.atomic():
        AuditChainHead.objects.update_or_create(pk=1, defaults={"last_seq": 41, "last_hash": "x"})
        assert hook() == []
        AuditChainHead.objects.filter(pk=1).update(last_seq=42)  # the transaction is still usable
    assert AuditChainHead.objects.get(pk=1).last_seq == 42
    assert "hook observed: tests.test_hooks" in caplog.text
    AuditChainHead.objects.filter(pk=1).delete()

    plain: Hook[[], None] = Hook("plain")
    plain.register(broken)
    with pytest.raises(DatabaseError), transaction.atomic():
        plain()


def test_a_port_has_one_answer() -> None:
    port: Port[object] = Port("example")
    with pytest.raises(ImproperlyConfigured, match="Nothing answers the example port"):
        port.get()
    port.register(ApprovalsAnswers())
    port.register(ApprovalsAnswers())  # ready() again: the same kind of answer
    with pytest.raises(ImproperlyConfigured, match="answered by ApprovalsAnswers already"):
        port.register(object())


def test_the_core_ports_and_hooks_are_answered_at_start_up() -> None:
    assert isinstance(core_hooks.approvals.get(), ApprovalsAnswers)
    assert core_hooks.publication_pushed.registered and core_hooks.grants_last_seen.registered


@pytest.mark.django_db
def test_an_event_nobody_listens_to_reads_none_of_its_occurrences() -> None:
    """A batch job passes its grants lazily; with no subscription for the event they are never read."""
    from exceptions.events import emit

    def never_read() -> Iterator[tuple[str, dict[str, object]]]:
        raise AssertionError("the occurrences were read although nobody listens")
        yield  # pragma: no cover

    with transaction.atomic():
        assert emit("grant.expired", occurrences=never_read()) == 0
