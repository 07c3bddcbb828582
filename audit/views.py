from __future__ import annotations

import json
from collections.abc import Iterator

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from audit.selectors import recent_events
from audit.verification import database_records
from exceptions.access import can_view_audit


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    if not can_view_audit(request.user):
        raise Http404("No such page.")
    events = recent_events(action=request.GET.get("action", ""), object_type=request.GET.get("object_type", ""))
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "audit/event_list.html", {"page": page})


@login_required
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """The whole chain as JSON lines; ``manage.py verify_audit --export FILE`` checks it offline."""
    if not can_view_audit(request.user):
        raise Http404("No such page.")

    def lines() -> Iterator[str]:
        for record in database_records():
            yield json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
    response["Content-Disposition"] = 'attachment; filename="egress-portal-audit.jsonl"'
    return response
