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

from audit.models import AuditEvent
from audit.selectors import event_choices, recent_events
from exceptions.access import can_view_audit

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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


def object_url(event: AuditEvent) -> str | None:
    name = OBJECT_PAGES.get(event.object_type)
    if name is None or not event.object_id.isascii() or not event.object_id.isdigit():
        return None
    try:
        return reverse(name, args=[int(event.object_id)])
    except NoReverseMatch:
        return None


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    if not can_view_audit(request.user):
        raise Http404("No such page.")
    form = AuditFilterForm(request.GET or None)
    filters: dict[str, Any] = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {"action": data["action"], "object_type": data["object_type"], "actor": data["actor"].strip()}
        if data["since"]:
            filters["since"] = _start_of(data["since"])
        if data["until"]:
            filters["until"] = _start_of(data["until"] + timedelta(days=1))
    events = recent_events(**filters) if not form.errors else AuditEvent.objects.none()
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    rows = [(event, object_url(event)) for event in page.object_list]
    return render(
        request, "audit/event_list.html", {"page": page, "rows": rows, "form": form}, status=400 if form.errors else 200
    )
