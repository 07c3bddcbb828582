"""Pages: gateways (everyone), a workload's observed traffic, keeping a stale grant, operations."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from exceptions.access import access_grant
from exceptions.selectors import recent_policy_drifts
from exceptions.validators import OBJECT_ID, parse_bounded_int
from traffic import selectors
from traffic.access import access_workload_traffic, can_manage_gateways, can_operate
from traffic.forms import GatewayForm, KeepForm
from traffic.models import EgressGateway
from traffic.operations import periodic_jobs, retry_parked
from traffic.scope import GatewayScope
from traffic.services.gateways import create_gateway
from traffic.services.stale import keep_grant


@login_required
def gateway_list(request: HttpRequest) -> HttpResponse:
    gateways = EgressGateway.objects.select_related("owner_team")
    return render(
        request,
        "traffic/gateway_list.html",
        {"gateways": gateways, "can_manage": can_manage_gateways(request.user)},
    )


@login_required
def gateway_detail(request: HttpRequest, name: str) -> HttpResponse:
    gateway = get_object_or_404(EgressGateway.objects.select_related("owner_team"), name=name)
    scope = GatewayScope.of(gateway).describe()
    return render(request, "traffic/gateway_detail.html", {"gateway": gateway, "scope": scope})


@login_required
def gateway_create(request: HttpRequest) -> HttpResponse:
    if not can_manage_gateways(request.user):
        raise PermissionDenied("Only administrators register gateways.")
    form = GatewayForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            gateway, token = create_gateway(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            # The token is shown on this response only; it is not stored.
            return render(request, "traffic/gateway_created.html", {"gateway": gateway, "token": token})
    return render(request, "traffic/gateway_form.html", {"form": form})


@login_required
def workload_traffic(request: HttpRequest, pk: int) -> HttpResponse:
    workload = access_workload_traffic(request.user, pk)
    return render(
        request,
        "traffic/workload_traffic.html",
        {"workload": workload, "denied": selectors.top_denied(workload.identity)},
    )


@login_required
@require_POST
def grant_keep(request: HttpRequest, pk: int) -> HttpResponse:
    grant = access_grant(request.user, pk)
    form = KeepForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the grant is still needed.")
        return redirect(grant)
    try:
        keep_grant(actor=request.user, grant=grant, reason=form.cleaned_data["reason"])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Kept: the unused-access clock restarts now (once).")
    return redirect(grant)


@login_required
def operations(request: HttpRequest) -> HttpResponse:
    if not can_operate(request.user):
        raise PermissionDenied("The operations page is for administrators and security officers.")
    context: dict[str, Any] = {
        "jobs": periodic_jobs(now=timezone.now()),
        "outbox": selectors.outbox_backlog(),
        "gateways": selectors.gateway_ingest(),
        "drifts": recent_policy_drifts(),
    }
    return render(request, "traffic/operations.html", context)


@login_required
@require_POST
def operations_retry(request: HttpRequest) -> HttpResponse:
    if not can_operate(request.user):
        raise PermissionDenied("The operations page is for administrators and security officers.")
    try:
        ids = [parse_bounded_int(v, OBJECT_ID) for v in request.POST.getlist("message")]
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("operations")
    count = retry_parked(actor=request.user, message_ids=ids)
    messages.success(request, f"{count} parked side effect(s) queued again.")
    return redirect("operations")


@login_required
@require_POST
def operations_sweep(request: HttpRequest) -> HttpResponse:
    if not can_operate(request.user):
        raise PermissionDenied("The operations page is for administrators and security officers.")
    from traffic.tasks import stale_sweep

    try:
        stale_sweep.apply_async(retry=False)
    except Exception as exc:  # the broker may be down; say so instead of a 500
        messages.error(request, f"The sweep could not be queued ({exc}); the daily schedule will run it.")
    else:
        messages.success(request, "Stale sweep queued; its outcome appears under the periodic jobs.")
    return redirect("operations")
