"""What the audit viewer asks of the apps whose objects the log is about.

The audit log sits below the core (every service records into it), but its
viewer shows events by team and ticket and links a request to its grants:
questions only the apps above can answer. They register here in their
``AppConfig.ready``:

- ``readers`` (a ``Port``): who may read the log, and the teams to filter by
  (the core answers: exceptions/audit_subjects.py).
- ``team_subjects`` / ``ticket_subjects``: for a team slug or a ticket, each
  app's (object type, queryset of its objects) pairs; the viewer looks their
  events up in the (object_type, object_id) index.
- ``related_subjects``: (label, object type, id) of the objects whose story
  continues one object's (a request's grants, a grant's request).
- ``job_last_failure``: when a periodic task last failed, and its error, if
  no run succeeded since (traffic keeps the job states).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from django.db.models import QuerySet

from foundation.hooks import Hook, Port


class Readers(Protocol):
    def may_read(self, user: Any) -> bool: ...

    def team_choices(self) -> list[tuple[str, str]]:
        """(slug, name) of every team, by name."""
        ...


readers: Port[Readers] = Port("audit readers")
team_subjects: Hook[[str], list[tuple[str, QuerySet[Any]]]] = Hook("team_subjects")
ticket_subjects: Hook[[str], list[tuple[str, QuerySet[Any]]]] = Hook("ticket_subjects")
related_subjects: Hook[[str, int], list[tuple[str, str, int]]] = Hook("related_subjects")
job_last_failure: Hook[[str], tuple[datetime, str] | None] = Hook("job_last_failure")


def may_read(user: Any) -> bool:
    return readers.get().may_read(user)
