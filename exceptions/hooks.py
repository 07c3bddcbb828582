"""What the core tells and asks the layers above it, without importing them.

The core (requests, grants, workloads, teams) sits below approvals, traffic,
webhooks and outcomes (see .importlinter). Where it must tell them something
or ask them a question, it goes through one of the seams below; each upper
app registers its answer in its ``AppConfig.ready``:

- ``approvals`` (a ``Port``): who approves for which team, what a person may
  decide, freezes, the approval state and go-live shown on the core's pages
  and API, and telling approvers and requesters (approvals/port.py).
- ``publication_pushed`` (a ``Hook``): a publish pushed a commit carrying
  new grants (outcomes observes the time to policy update).
- ``grants_last_seen`` (a ``Hook``): the last observed traffic per grant
  (traffic answers from its usage rows).
- ``exceptions.events.event_sinks``: the events the core announces (webhooks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from django.db.models import Q, QuerySet

from exceptions.models import ExceptionRequest, Workload
from foundation.actions import Actions
from foundation.hooks import Hook, Port


class GoLiveAnswer(Protocol):
    @property
    def at(self) -> datetime | None: ...

    @property
    def reason(self) -> str: ...

    def as_dict(self) -> dict[str, object]: ...


class Approvals(Protocol):
    """What the core asks of the approval layer."""

    def approver_team_ids(self, user: Any) -> frozenset[int]:
        """Teams whose requests ``user`` approves for (their approver groups)."""
        ...

    def request_visibility(self, user: Any) -> Q | None:
        """Requests beyond their teams' that ``user`` may see (those they may decide or decided), or None."""
        ...

    def frozen_environments(self, now: datetime) -> frozenset[str]:
        """Environments under a change freeze at ``now``: their grants wait to go live."""
        ...

    def request_submitted(self, request: ExceptionRequest, *, event: str) -> None:
        """A request waits for approvals: tell whoever can supply the missing ones."""
        ...

    def requests_activated(self, request_ids: Sequence[int]) -> None:
        """Scheduled requests went live: tell their requesters."""
        ...

    def approval_summary(self, request: ExceptionRequest) -> dict[str, object]:
        """Rule, why it applied, required, given and missing approvals."""
        ...

    def go_live(self, request: ExceptionRequest, *, now: datetime, cache: dict[str, Any]) -> GoLiveAnswer:
        """When ``request`` would go live if its approvals completed at ``now`` (``cache`` spans one page)."""
        ...

    def request_actions(self, user: Any, request: ExceptionRequest) -> Actions:
        """What ``user`` may do with ``request`` (decide, resubmit, cancel, ...) and why not."""
        ...

    def has_decidable_requests(self, user: Any) -> bool: ...

    def approvable_requests(self, user: Any) -> QuerySet[ExceptionRequest]:
        """The pending requests ``user`` may approve now (the API's ``?decidable=true``)."""
        ...

    def form_preview(
        self, *, workload: Workload, hosts: Sequence[str], purpose: str, data_class: str, risk_tier: str, now: datetime
    ) -> dict[str, object]:
        """For the request form: the rule that would apply, who must approve, when it would go live."""
        ...

    def request_page(self, user: Any, request: ExceptionRequest, *, now: datetime) -> dict[str, Any]:
        """What the request page shows about approvals (rule, missing, go-live, decisions, preview)."""
        ...


approvals: Port[Approvals] = Port("approvals")

# (revision, pushed_at, request ids of the grants the commit added); runs in a savepoint of the publish.
publication_pushed: Hook[[str, datetime, list[int]], object] = Hook("publication_pushed", observer=True)

# grant ids -> {grant id: last observed traffic}; the answers are merged.
grants_last_seen: Hook[[list[int]], Mapping[int, datetime]] = Hook("grants_last_seen")


def last_seen(grant_ids: list[int]) -> dict[int, datetime]:
    merged: dict[int, datetime] = {}
    for answer in grants_last_seen(grant_ids):
        for grant_id, seen in answer.items():
            if grant_id not in merged or seen > merged[grant_id]:
                merged[grant_id] = seen
    return merged
