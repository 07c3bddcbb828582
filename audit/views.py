from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from audit import hooks
from audit.hooks import may_read as can_view_audit
from audit.models import AuditEvent
from audit.selectors import chain_status, event_choices, head_seq, object_history, recent_events

# Where each kind of audited object can be looked at.
OBJECT_PAGES = {
    "exceptions.exceptionrequest": "request-detail",
    "exceptions.grant": "grant-detail",
}


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=200, help_text="User name, exactly (any case).")
    action = forms.ChoiceField(required=False)
    object_type = forms.ChoiceField(required=False, label="Object type")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To (inclusive)")
    team = forms.ChoiceField(required=False, help_text="Its workloads, their requests and grants, its gateways.")
    ticket = forms.CharField(required=False, max_length=100, help_text="Requests naming it (any case), their grants.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        team_field = self.fields["team"]
        assert isinstance(team_field, forms.ChoiceField)
        team_field.choices = [("", "any"), *hooks.readers.get().team_choices()]
        actions, object_types = event_choices()
        for name, values in (("action", actions), ("object_type", object_types)):
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = [("", "any"), *((v, v) for v in values)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until < since:
            self.add_error("until", "The end date is before the start date; swap them.")
        return cleaned


def _start_of(day: Any) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


TYPE_LENGTH = AuditEvent._meta.get_field("object_type").max_length or 0
ID_LENGTH = AuditEvent._meta.get_field("object_id").max_length or 0


def _as_row_id(text: str) -> int | None:
    """A primary key written in an audit id, or None: ASCII digits that fit a bigint
    (int() of 5,000 digits raises, and past 2**63 no row can match)."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def object_url(event: AuditEvent) -> str | None:
    name = OBJECT_PAGES.get(event.object_type)
    row_id = _as_row_id(event.object_id)
    if name is None or row_id is None:
        return None
    try:
        return reverse(name, args=[row_id])
    except NoReverseMatch:
        return None


class ChainPaginator(Paginator):
    """A paginator told the list's length instead of counting it."""

    def __init__(self, object_list: Any, per_page: int, *, length: int) -> None:
        super().__init__(object_list, per_page)
        self.length = length

    @property
    def count(self) -> int:
        return self.length


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    if not can_view_audit(request.user):
        raise Http404("No such page.")
    form = AuditFilterForm(request.GET or None)
    filters: dict[str, Any] = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "action": data["action"],
            "object_type": data["object_type"],
            "actor": data["actor"].strip(),
            "team": data["team"],
            "ticket": data["ticket"].strip(),
        }
        if data["since"]:
            filters["since"] = _start_of(data["since"])
        if data["until"]:
            filters["until"] = _start_of(data["until"] + timedelta(days=1))
    events = recent_events(**filters) if not form.errors else AuditEvent.objects.none()
    paginator = Paginator(events, 50)
    if not form.errors and not any(filters.values()):
        # The whole chain: numbered 1, 2, 3... and never deleted from, so its newest
        # number (the head row) is its length, where COUNT(*) reads every event.
        paginator = ChainPaginator(events, 50, length=head_seq())
    page = paginator.get_page(request.GET.get("page"))
    rows = [(event, object_url(event), history_url(event)) for event in page.object_list]
    return render(
        request,
        "audit/event_list.html",
        {"page": page, "rows": rows, "form": form, "status": chain_status()},
        status=400 if form.errors else 200,
    )


def history_url(event: AuditEvent) -> str | None:
    try:
        return reverse("audit-object", args=[event.object_type, event.object_id])
    except NoReverseMatch:  # an id with a slash, or none: no page of its own
        return None


def _related(object_type: str, object_id: str) -> list[tuple[str, str]]:
    """(label, history URL) of the objects whose story continues this one's."""
    row_id = _as_row_id(object_id)
    if row_id is None:
        return []
    return [
        (label, reverse("audit-object", args=[related_type, related_id]))
        for answer in hooks.related_subjects(object_type, row_id)
        for label, related_type, related_id in answer
    ]


@login_required
def audit_object(request: HttpRequest, object_type: str, object_id: str) -> HttpResponse:
    """One object's full history, oldest first, read-only (auditors see every object)."""
    if not can_view_audit(request.user):
        raise Http404("No such page.")
    if len(object_type) > TYPE_LENGTH or len(object_id) > ID_LENGTH:
        raise Http404("No event is about such an object: the type or id is longer than any recorded.")
    page = Paginator(object_history(object_type, object_id), 100).get_page(request.GET.get("page"))
    probe = AuditEvent(object_type=object_type, object_id=object_id)
    return render(
        request,
        "audit/object_history.html",
        {
            "page": page,
            "object_type": object_type,
            "object_id": object_id,
            "object_url": object_url(probe),
            "related": _related(object_type, object_id),
            "status": chain_status(),
        },
        status=200 if page.paginator.count else 404,
    )
