"""Errors every layer raises and the interfaces translate (the API answers 409 for a state conflict)."""

from __future__ import annotations


class TransitionError(Exception):
    """An illegal or stale transition; the message says which and why."""
