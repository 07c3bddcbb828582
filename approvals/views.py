"""The approver dashboard, the decision endpoints, resubmission and the policy page."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals import breakglass, gate, selectors
from approvals.access import approval_state
from approvals.actions import request_actions
from approvals.forms import DecisionForm, QueueFilterForm, ShortenForm
from approvals.mfa import step_up_url
from approvals.policy import current_policy
from exceptions.access import access_grant, access_request
from exceptions.choices import RiskTier
from exceptions.forms import DestinationFormSet, ExceptionRequestForm, apply_service_errors
from exceptions.models import ExceptionRequest
from exceptions.services import grants
from exceptions.services.requests import resubmit_request
from exceptions.state import TransitionError
from exceptions.views import render_request_page
from foundation.actors import actor_for
from foundation.redirects import safe_next

PAGE_SIZE = 25


def _form_errors(form: Any) -> str:
    # The field's label, as the page shows it, not its POST name.
    def label(name: str) -> str:
        return str(form[name].label) if name in form.fields else "Form"

    return "; ".join(f"{label(field)}: {' '.join(map(str, errors))}" for field, errors in form.errors.items())


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    if isinstance(exc, PermissionDenied):
        return str(exc) or "You may not do that."
    return str(exc)


@login_required
def approval_queue(request: HttpRequest) -> HttpResponse:
    form = QueueFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    filters = selectors.QueueFilters(
        environment=data.get("environment", ""),
        tier=data.get("tier", ""),
        team=data.get("team", ""),
        purpose=data.get("purpose", ""),
        needs_my_group=bool(data.get("mine")),
    )
    policy = current_policy()
    queryset = selectors.with_decision_data(selectors.decidable_requests(request.user, policy=policy, filters=filters))
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = selectors.queue_rows(request.user, list(page.object_list), policy=policy, now=timezone.now())
    reviews = breakglass.reviews_for(request.user, now=timezone.now())
    context = {"page": page, "rows": rows, "form": form, "policy": policy, "breakglass_reviews": reviews}
    return render(request, "approvals/queue.html", context)


def _confirmation(request: HttpRequest, exception_request: ExceptionRequest, form: DecisionForm) -> HttpResponse:
    """Approving a high-risk request takes a second, deliberate click; the narrowing travels with it."""
    return render(
        request,
        "approvals/confirm.html",
        {
            "req": exception_request,
            "form": form,
            "state": approval_state(exception_request),
            "post": request.POST,
            "lifetime_hours": form.cleaned_data.get("lifetime_hours"),
            "drop": form.cleaned_data.get("drop") or [],
        },
    )


def _refused_on_fields(request: HttpRequest, exception_request: ExceptionRequest, form: DecisionForm) -> HttpResponse:
    """The request page again, the approval form filled as sent, each error on its field; nothing was changed."""
    return render_request_page(request, exception_request, status=400, decision_form=form)


PENDING_DECISION = "egress_pending_decision"
DECISION_URLS = {
    gate.APPROVE: "request-approve",
    gate.REJECT: "request-reject",
    gate.REQUEST_CHANGES: "request-changes",
}


def _step_up(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """The rule needs MFA at the decision: keep what was typed, send the person to allauth's step-up,
    and bring them back to confirm the same decision (a POST is re-asked after the step-up, never replayed)."""
    fields = [[k, v] for k in request.POST if k != "csrfmiddlewaretoken" for v in request.POST.getlist(k)]
    request.session[PENDING_DECISION] = {"pk": pk, "action": action, "fields": fields}
    return HttpResponseRedirect(step_up_url(reverse("request-decide-again", args=[pk, action])))


@login_required
def decide_again(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """After the step-up: the decision the person started, to confirm with one click."""
    if action not in gate.ACTIONS:
        raise Http404(f"No decision called {action!r}.")
    try:
        exception_request = gate.access_to_decide(actor_for(request), pk, action)
    except gate.StepUpRequired:
        return HttpResponseRedirect(step_up_url(request.get_full_path()))
    pending = request.session.get(PENDING_DECISION) or {}
    fields = pending.get("fields", []) if pending.get("pk") == pk and pending.get("action") == action else []
    context = {
        "req": exception_request,
        "action": action,
        "reason": next((v for k, v in fields if k == "reason"), ""),
        "hidden": [(k, v) for k, v in fields if k not in {"reason", "confirm", "confirm_approve"}],
        "post_url": reverse(
            {"approve": "request-approve", "reject": "request-reject"}.get(action, "request-changes"), args=[pk]
        ),
        "state": approval_state(exception_request),
        "actor": actor_for(request),
    }
    return render(request, "approvals/decide_again.html", context)


@login_required
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        exception_request = gate.access_to_decide(actor_for(request), pk, "approve")
    except gate.StepUpRequired:
        return _step_up(request, pk, "approve")
    form = DecisionForm(request.POST, request=exception_request)
    if not form.is_valid():
        return _refused_on_fields(request, exception_request, form)
    if exception_request.risk_tier == RiskTier.HIGH and not form.cleaned_data["confirm"]:
        return _confirmation(request, exception_request, form)
    lifetime, keep = form.narrowing()
    try:
        grants = gate.decide(
            actor=actor_for(request),
            request=exception_request,
            action=gate.APPROVE,
            reason=form.cleaned_data["reason"],
            lifetime=lifetime,
            keep_destination_ids=keep,
        ).grants
    except gate.StepUpRequired:
        return _step_up(request, pk, "approve")
    except ValidationError as exc:
        if form.add_service_errors(exc):  # a lifetime or destinations refusal (e.g. the rule's cap)
            return _refused_on_fields(request, ExceptionRequest.objects.get(pk=pk), form)
        messages.error(request, _error_text(exc))
        return redirect(exception_request)
    except (TransitionError, PermissionDenied) as exc:
        messages.error(request, _error_text(exc))
        return redirect(exception_request)
    state = approval_state(ExceptionRequest.objects.get(pk=pk))
    if grants:
        messages.success(request, f"Request #{pk} approved: {len(grants)} grant(s) issued.")
    else:
        messages.success(request, f"Your approval of request #{pk} counts; {state.missing_summary()}.")
    return redirect(safe_next(request, exception_request.get_absolute_url()))


def _decide_against(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    try:
        exception_request = gate.access_to_decide(actor_for(request), pk, action)
    except gate.StepUpRequired:
        return _step_up(request, pk, action)
    form = DecisionForm(request.POST)
    form.is_valid()
    reason = form.cleaned_data.get("reason", "")
    try:
        gate.decide(actor=actor_for(request), request=exception_request, action=action, reason=reason)
    except gate.StepUpRequired:
        return _step_up(request, pk, action)
    except (ValidationError, TransitionError, PermissionDenied) as exc:
        messages.error(request, _error_text(exc))
    else:
        done = "rejected" if action == "reject" else "sent back to the requester with changes requested"
        messages.success(request, f"Request #{pk} {done}.")
    return redirect(exception_request)


@login_required
@require_POST
def reject(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide_against(request, pk, "reject")


@login_required
@require_POST
def request_changes(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide_against(request, pk, "request_changes")


@login_required
def resubmit(request: HttpRequest, pk: int) -> HttpResponse:
    """The requester edits a request sent back with changes requested, and resubmits it."""
    exception_request = access_request(request.user, pk)
    actions = request_actions(request.user, exception_request)
    if not actions.allows("resubmit"):
        raise PermissionDenied(actions.why_not("resubmit"))
    hours = int(exception_request.lifetime.total_seconds() // 3600)
    by_days = hours % 24 == 0
    initial: dict[str, Any] = {
        "workload": exception_request.workload_id,
        "purpose": exception_request.purpose,
        "data_class": exception_request.data_class,
        "justification": exception_request.justification,
        "ticket_ref": exception_request.ticket_ref,
        "lifetime_value": hours // 24 if by_days else hours,
        "lifetime_unit": "days" if by_days else "hours",
        "desired_start": exception_request.desired_start,
    }
    rows = [d.as_dict() for d in exception_request.destinations.all()]
    data = request.POST if request.method == "POST" else None
    workloads = type(exception_request.workload)._default_manager.filter(pk=exception_request.workload_id)
    form = ExceptionRequestForm(data, workloads=workloads, initial=initial)
    formset = DestinationFormSet(data, prefix="dest", initial=None if data else rows)
    if data is not None and form.is_valid() and formset.is_valid():
        lifetime = form.lifetime()
        assert lifetime is not None
        try:
            resubmit_request(
                actor=actor_for(request),
                request=exception_request,
                destinations=[f.cleaned_data for f in formset.forms if f.cleaned_data],
                purpose=form.cleaned_data["purpose"],
                data_class=form.cleaned_data["data_class"],
                justification=form.cleaned_data["justification"],
                ticket_ref=form.cleaned_data["ticket_ref"],
                lifetime=lifetime,
                desired_start=form.cleaned_data["desired_start"],
            )
        except ValidationError as exc:
            apply_service_errors(exc, form, formset)
        except (TransitionError, PermissionDenied) as exc:
            messages.error(request, _error_text(exc))
            return redirect(exception_request)
        else:
            messages.success(request, f"Request #{pk} resubmitted; earlier approvals no longer count.")
            return redirect(exception_request)
    changes = exception_request.decisions.filter(kind="request_changes").select_related("actor").last()
    return render(
        request,
        "approvals/resubmit.html",
        {"req": exception_request, "form": form, "formset": formset, "changes": changes},
        status=400 if data is not None else 200,
    )


@login_required
def policy_page(request: HttpRequest) -> HttpResponse:
    """The approval policy in force, read-only, with its revision."""
    return render(request, "approvals/policy.html", {"policy": current_policy()})


@login_required
@require_POST
def grant_do_not_renew(request: HttpRequest, pk: int) -> HttpResponse:
    grant = access_grant(request.user, pk)
    try:
        grants.mark_do_not_renew(actor=actor_for(request), grant=grant, reason=request.POST.get("reason", ""))
    except (ValidationError, TransitionError, PermissionDenied) as exc:
        messages.error(request, _error_text(exc))
    else:
        messages.success(request, f"Grant #{pk} will lapse: no reminders, no renewal offered.")
    return redirect(grant)


@login_required
@require_POST
def grant_shorten(request: HttpRequest, pk: int) -> HttpResponse:
    grant = access_grant(request.user, pk)
    form = ShortenForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect(grant)
    try:
        grants.shorten_grant(
            actor=actor_for(request),
            grant=grant,
            expires_at=form.cleaned_data["expires_at"],
            reason=form.cleaned_data["reason"],
        )
    except (ValidationError, TransitionError, PermissionDenied) as exc:
        messages.error(request, _error_text(exc))
    else:
        messages.success(request, f"Grant #{pk} now expires {form.cleaned_data['expires_at']:%Y-%m-%d %H:%M %Z}.")
    return redirect(grant)
