"""Break-glass pages: the step-up-guarded form (and its drill), a use, early revoke, review, drills."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals import breakglass
from approvals.breakglass_forms import BreakGlassForm
from approvals.mfa import enrol_url, mfa_enrolled, step_up_is_fresh, step_up_url
from foundation.actors import actor_for

FLOW_STARTED = "breakglass_flow_started"
DESTINATION_KEY = re.compile(r"^destinations\[(\d+)\]\.\w+$")


def _flow_started(request: HttpRequest) -> datetime:
    """When this user opened the flow (before the step-up): the drill's recorded duration starts here."""
    stamp = request.session.get(FLOW_STARTED)
    if not isinstance(stamp, int | float):
        stamp = timezone.now().timestamp()
        request.session[FLOW_STARTED] = stamp
    return datetime.fromtimestamp(stamp, tz=UTC)


def _show_service_errors(form: BreakGlassForm, exc: ValidationError) -> None:
    """Put each service error next to the field it names (``destinations[1].port`` is line 2)."""
    for field, errors in exc.message_dict.items():
        target: str | None = {"duration": "duration_hours", "__all__": None}.get(field, field)
        prefix = ""
        match = DESTINATION_KEY.match(field)
        if match:
            target, prefix = "destinations", f"Line {int(match.group(1)) + 1}: "
        for error in errors:
            form.add_error(target if target in form.fields else None, prefix + error)


def _page(request: HttpRequest, *, drill: bool) -> HttpResponse:
    started = _flow_started(request)
    if not mfa_enrolled(request.user):
        return render(request, "approvals/breakglass/no_mfa.html", {"enrol_url": enrol_url(request.path)}, status=403)
    actor = actor_for(request)
    now = timezone.now()
    if not step_up_is_fresh(actor, now=now):
        # allauth's reauthentication flow: a code, then back here (a POST is re-asked, not replayed).
        return HttpResponseRedirect(step_up_url(request.path))
    workloads = breakglass.breakglass_workloads(request.user)
    form = BreakGlassForm(request.POST or None, workloads=workloads)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            use = breakglass.use_breakglass(
                actor=actor,
                workload=data["workload"],
                destinations=form.destination_rows(),
                incident_ref=data["incident_ref"],
                reason=data["reason"],
                duration=timedelta(hours=data["duration_hours"]),
                acknowledged=data["acknowledged"],
                flow_started_at=started,
                drill=drill,
                now=now,
            )
        except breakglass.StepUpRequired:
            return HttpResponseRedirect(step_up_url(request.path))
        except ValidationError as exc:
            _show_service_errors(form, exc)
        else:
            request.session.pop(FLOW_STARTED, None)
            messages.success(
                request,
                f"Drill #{use.pk} recorded: nothing was opened."
                if drill
                else f"Break-glass #{use.pk} is open until {use.expires_at:%H:%M %Z}; security has been told.",
            )
            return redirect("breakglass-detail", use.pk)
    context = {"form": form, "drill": drill, "actor": actor, "max_hours": settings.EGRESS_BREAKGLASS_MAX_HOURS}
    return render(request, "approvals/breakglass/form.html", context, status=400 if form.errors else 200)


@login_required
def breakglass_page(request: HttpRequest) -> HttpResponse:
    return _page(request, drill=False)


@login_required
def drill_page(request: HttpRequest) -> HttpResponse:
    return _page(request, drill=True)


@login_required
def use_detail(request: HttpRequest, pk: int) -> HttpResponse:
    use = breakglass.access_use(request.user, pk)
    now = timezone.now()
    context = {
        "use": use,
        "can_revoke": not use.drill
        and use.revoked_at is None
        and use.expires_at is not None
        and use.expires_at > now
        and breakglass.revoke_denial(request.user, use) is None,
        "can_review": use.reviewed_at is None and breakglass.review_denial(request.user, use) is None,
    }
    return render(request, "approvals/breakglass/detail.html", context)


@login_required
@require_POST
def use_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    use = breakglass.access_use(request.user, pk)
    try:
        breakglass.revoke_breakglass(actor=actor_for(request), use=use, reason=request.POST.get("reason", ""))
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, "; ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, f"Break-glass #{pk} revoked; the bundle is republished at once.")
    return redirect("breakglass-detail", pk)


@login_required
@require_POST
def use_review(request: HttpRequest, pk: int) -> HttpResponse:
    use = breakglass.access_use(request.user, pk)
    try:
        breakglass.review_breakglass(
            actor=actor_for(request),
            use=use,
            outcome=request.POST.get("outcome", ""),
            notes=request.POST.get("notes", ""),
        )
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, "; ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, f"Break-glass #{pk} reviewed.")
    return redirect("breakglass-detail", pk)


@login_required
def drills_page(request: HttpRequest) -> HttpResponse:
    return render(request, "approvals/breakglass/drills.html", {"teams": breakglass.drills_by_team(request.user)})
