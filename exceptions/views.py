"""Server-rendered pages for requesters, approvers and everyone who reads grants."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from exceptions import hooks, selectors
from exceptions.access import access_grant, access_request, requestable_workloads, roles_for, visible_grants
from exceptions.actions import grant_actions
from exceptions.choices import RequestStatus
from exceptions.forms import DestinationFormSet, ExceptionRequestForm, ReasonForm, apply_service_errors
from exceptions.models import ExceptionRequest
from exceptions.risk import format_duration
from exceptions.services import grants, requests, submissions
from exceptions.state import TransitionError
from exceptions.validators import OBJECT_ID, PORT, IntBounds, parse_bounded_int
from foundation.actors import actor_for

PAGE_SIZE = 25


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where "/" and signing in land: each role's most useful page.

    Decisions waiting come first; then a team member's own requests; an
    approver or security officer who files nothing gets the queue even when it
    is empty; a read-only auditor (or an admin outside any team) the audit log.
    """
    roles = roles_for(request.user)
    if roles.decides and hooks.approvals.get().has_decidable_requests(request.user):
        return redirect("approval-queue")
    if roles.can_file_requests:
        return redirect("request-list")
    if roles.decides:
        return redirect("approval-queue")
    if roles.sees_everything:
        return redirect("audit-log")
    return redirect("request-list")


@login_required
def request_list(request: HttpRequest) -> HttpResponse:
    scope = request.GET.get("scope", "mine")
    status = request.GET.get("status", "")
    if status not in RequestStatus.values:
        status = ""
    page = Paginator(selectors.request_list(request.user, scope=scope, status=status), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "exceptions/request_list.html",
        {"page": page, "scope": scope, "status": status, "statuses": RequestStatus.choices},
    )


def bad_parameter(request: HttpRequest, name: str, messages_: list[str]) -> HttpResponse:
    """A 400 page that names the parameter and says how to fix it."""
    return render(request, "bad_parameter.html", {"name": name, "problems": messages_}, status=400)


class BadParameter(Exception):
    def __init__(self, name: str, messages_: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.messages = messages_


def query_number(params: Any, name: str, bounds: IntBounds) -> int | None:
    """A number from the query string (or POST), parsed by the one bounded parser."""
    raw = params.get(name, "")
    if raw == "":
        return None
    try:
        return parse_bounded_int(raw, bounds)
    except ValidationError as exc:
        raise BadParameter(name, exc.messages) from exc


@login_required
def request_create(request: HttpRequest) -> HttpResponse:
    try:
        return _request_create(request)
    except BadParameter as exc:
        return bad_parameter(request, exc.name, exc.messages)


def _request_create(request: HttpRequest) -> HttpResponse:
    workloads = requestable_workloads(request.user)
    data = request.POST if request.method == "POST" else None
    initial: dict[str, Any] = {"workload": query_number(request.GET, "workload", OBJECT_ID)}
    initial_rows = [
        {"host": request.GET.get("host", ""), "port": query_number(request.GET, "port", PORT) or 443, "protocol": "tcp"}
    ]
    renews_id = query_number(request.POST if data else request.GET, "renews", OBJECT_ID)
    renews = None
    if renews_id is not None:
        renews = visible_grants(request.user).filter(pk=renews_id).first()
        if renews is None:
            raise BadParameter(
                "renews", ["No grant with this id that you may renew; open the grant and renew it there."]
            )
    if renews is not None:
        # A renewal is a new request for the same workload and destination, linked to the grant it extends.
        initial.update(
            workload=renews.workload_id,
            renews=renews.pk,
            purpose=renews.request.purpose,
            data_class=renews.request.data_class,
            ticket_ref=renews.request.ticket_ref,
        )
        initial_rows = [
            {"host": renews.host, "port": renews.port, "protocol": renews.protocol, "tls_required": renews.tls_required}
        ]
    form = ExceptionRequestForm(data, workloads=workloads, initial=initial)
    formset = DestinationFormSet(data, prefix="dest", initial=None if data else initial_rows)
    if request.method == "POST" and form.is_valid() and formset.is_valid():
        lifetime = form.lifetime()
        assert lifetime is not None
        destinations = [f.cleaned_data for f in formset.forms if f.cleaned_data]
        try:
            created = requests.submit_request(
                actor=actor_for(request),
                workload=form.cleaned_data["workload"],
                destinations=destinations,
                purpose=form.cleaned_data["purpose"],
                data_class=form.cleaned_data["data_class"],
                justification=form.cleaned_data["justification"],
                ticket_ref=form.cleaned_data["ticket_ref"],
                lifetime=lifetime,
                desired_start=form.cleaned_data["desired_start"],
                renews=renews,
                draft="save_draft" in request.POST,
            )
        except ValidationError as exc:
            apply_service_errors(exc, form, formset)
        else:
            messages.success(
                request, f"Request #{created.pk} submitted; approvers for {created.workload.team} were asked."
            )
            return redirect(created)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "exceptions/request_form.html",
        {"form": form, "formset": formset, "has_workloads": workloads.exists(), "renews": renews},
        status=status,
    )


@login_required
@require_GET
def request_preview(request: HttpRequest) -> JsonResponse:
    """Live validation for the request form: risk tier, lifetime cap and field errors."""
    hosts = [h for h in request.GET.getlist("host") if h.strip()]
    ports = request.GET.getlist("port")
    form = ExceptionRequestForm(request.GET, workloads=requestable_workloads(request.user))
    form.is_valid()
    preview = submissions.preview_submission(
        workload=form.cleaned_data.get("workload"),
        destinations=[{"host": h, "port": ports[i] if i < len(ports) else "443"} for i, h in enumerate(hosts)],
        purpose=request.GET.get("purpose", ""),
        data_class=request.GET.get("data_class", ""),
        lifetime=form.lifetime() if "lifetime_value" in form.cleaned_data else None,
    )
    errors = dict(preview.errors)
    # Only what was typed and is wrong: an empty field is not an error while filling in.
    for field in ("workload", "lifetime_value"):
        if request.GET.get(field) and field in form.errors:
            errors.setdefault("lifetime" if field == "lifetime_value" else field, [str(e) for e in form.errors[field]])
    body: dict[str, Any] = {"errors": errors, "hosts": preview.hosts}
    if preview.risk is not None:
        body["risk"] = {**preview.risk.as_dict(), "lifetime_cap": format_duration(preview.risk.lifetime_cap)}
    workload = form.cleaned_data.get("workload")
    if preview.risk is not None and workload is not None:
        # Issue 8: which approval rule would apply and when the request would go live.
        body["approval"] = hooks.approvals.get().form_preview(
            workload=workload,
            hosts=preview.hosts,
            purpose=request.GET.get("purpose", ""),
            data_class=request.GET.get("data_class", ""),
            risk_tier=preview.risk.tier,
            now=timezone.now(),
        )
    return JsonResponse(body)


def render_request_page(
    request: HttpRequest, exception_request: ExceptionRequest, *, status: int = 200, **extra: Any
) -> HttpResponse:
    """The request page; a decision refused on a field re-renders it with its form (``extra``) and 400."""
    return render(
        request,
        "exceptions/request_detail.html",
        {
            "req": exception_request,
            "destinations": exception_request.destinations.all(),
            "grants": exception_request.grants.all(),
            "timeline": selectors.request_timeline(exception_request),
            # Approval rule, missing approvals, go-live and what this user may do: approvals owns them.
            **hooks.approvals.get().request_page(request.user, exception_request, now=timezone.now()),
            **extra,
        },
        status=status,
    )


@login_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render_request_page(request, access_request(request.user, pk))


@login_required
@require_POST
def request_submit_draft(request: HttpRequest, pk: int) -> HttpResponse:
    exception_request = access_request(request.user, pk)
    try:
        requests.submit_draft(actor=actor_for(request), request=exception_request)
    except (TransitionError, PermissionDenied) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Request #{pk} submitted for approval.")
    return redirect(exception_request)


@login_required
@require_POST
def request_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    exception_request = access_request(request.user, pk, "cancel")
    form = ReasonForm(request.POST)
    if not form.is_valid():
        # Never act on input other than what was sent (a reason we could not read).
        messages.error(request, reason_error(form))
        return redirect(exception_request)
    try:
        requests.cancel_request(
            actor=actor_for(request), request=exception_request, reason=form.cleaned_data.get("reason", "")
        )
    except TransitionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Request #{pk} cancelled.")
    return redirect(exception_request)


def reason_error(form: ReasonForm) -> str:
    return "Reason: " + " ".join(str(e) for e in form.errors.get("reason", [])) + " Nothing was changed."


@login_required
def grant_list(request: HttpRequest) -> HttpResponse:
    view = request.GET.get("view", "active")
    if view not in selectors.GRANT_VIEWS:
        view = "active"
    now = timezone.now()
    page = Paginator(selectors.grant_list(request.user, view=view, now=now), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request, "exceptions/grant_list.html", {"page": page, "view": view, "views": selectors.GRANT_VIEWS, "now": now}
    )


@login_required
def grant_detail(request: HttpRequest, pk: int) -> HttpResponse:
    grant = access_grant(request.user, pk)
    return render(
        request,
        "exceptions/grant_detail.html",
        {
            "grant": grant,
            "now": timezone.now(),
            "actions": grant_actions(request.user, grant),
        },
    )


@login_required
@require_POST
def grant_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    grant = access_grant(request.user, pk, "revoke")
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, reason_error(form))
        return redirect(grant)
    try:
        grants.revoke_grant(actor=actor_for(request), grant=grant, reason=form.cleaned_data.get("reason", ""))
    except (ValidationError, TransitionError, PermissionDenied) as exc:
        messages.error(request, " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc))
    else:
        messages.success(request, f"Grant #{pk} revoked.")
    return redirect(grant)
