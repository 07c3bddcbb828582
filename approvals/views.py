"""The approver dashboard and the decision endpoints of the request page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from approvals import services
from exceptions import selectors
from exceptions.access import access_request
from exceptions.forms import ReasonForm
from exceptions.state import TransitionError


@login_required
def approval_queue(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.approval_queue(request.user), 25).get_page(request.GET.get("page"))
    return render(request, "approvals/queue.html", {"page": page})


@login_required
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    exception_request = access_request(request.user, pk, "decide")
    form = ReasonForm(request.POST)
    form.is_valid()
    try:
        grants = services.approve_request(
            actor=request.user, request=exception_request, reason=form.cleaned_data.get("reason", "")
        )
    except TransitionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Request #{pk} approved: {len(grants)} grant(s) issued.")
    return redirect(exception_request)


@login_required
@require_POST
def reject(request: HttpRequest, pk: int) -> HttpResponse:
    exception_request = access_request(request.user, pk, "decide")
    form = ReasonForm(request.POST)
    form.is_valid()
    try:
        services.reject_request(
            actor=request.user, request=exception_request, reason=form.cleaned_data.get("reason", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except TransitionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Request #{pk} rejected.")
    return redirect(exception_request)
