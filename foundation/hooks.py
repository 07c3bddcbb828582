"""Calls from a lower layer into the layers above it, without importing them.

A lower layer declares a ``Hook`` where it must tell or ask an upper layer
something (``exceptions/hooks.py`` lists the core's); the upper app registers
its function in ``AppConfig.ready``. Calling a hook runs every registered
function, in registration order, in the caller's transaction, and returns
their results as a list (empty when nobody registered: the lower layer works
alone). Keep hooks few and typed: each is a named seam in the architecture
page, not a signal bus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class Hook(Generic[P, R]):
    """``observer=True``: each function runs in its own savepoint and a database error in it is
    logged, never raised, so a metric can never roll back the change it observes."""

    def __init__(self, name: str, *, observer: bool = False) -> None:
        self.name = name
        self.observer = observer
        self._functions: list[Callable[P, R]] = []

    def register(self, function: Callable[P, R]) -> Callable[P, R]:
        """Add ``function`` (once; registering it again is a no-op, as ``ready()`` may run twice in tests)."""
        if function not in self._functions:
            self._functions.append(function)
        return function

    @property
    def registered(self) -> tuple[Callable[P, R], ...]:
        return tuple(self._functions)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> list[R]:
        if not self.observer:
            return [function(*args, **kwargs) for function in self._functions]
        answers = []
        for function in self._functions:
            try:
                with transaction.atomic():
                    answers.append(function(*args, **kwargs))
            except DatabaseError:
                logger.exception("hook %s: %s.%s failed", self.name, function.__module__, function.__qualname__)
        return answers

    def __repr__(self) -> str:
        names = ", ".join(f"{f.__module__}.{f.__qualname__}" for f in self._functions) or "nothing"
        return f"<Hook {self.name}: {names}>"


T = TypeVar("T")


class Port(Generic[T]):
    """A question a lower layer asks and exactly one upper app answers (an object with typed methods).

    The upper app registers its answer in ``AppConfig.ready``; asking before
    that, or with nobody registered, is a configuration error, named.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._answer: T | None = None

    def register(self, answer: T) -> None:
        """Set the answer (again, when ``ready()`` runs twice); a second app answering too is a mistake."""
        if self._answer is not None and type(self._answer) is not type(answer):
            raise ImproperlyConfigured(
                f"The {self.name} port is answered by {type(self._answer).__qualname__} already, "
                f"not also by {type(answer).__qualname__}."
            )
        self._answer = answer

    def get(self) -> T:
        if self._answer is None:
            raise ImproperlyConfigured(f"Nothing answers the {self.name} port; is its app in INSTALLED_APPS?")
        return self._answer
