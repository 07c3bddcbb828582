"""The webhooks page for administrators: subscriptions, their deliveries, redelivery."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from foundation.actors import actor_for
from webhooks import services
from webhooks.access import access_delivery, access_subscription, visible_subscriptions
from webhooks.events import EVENTS
from webhooks.models import SECRET_MAX_LENGTH, SECRET_MIN_LENGTH, validate_secret


class SubscriptionForm(forms.Form):
    url = forms.URLField(max_length=500, label="URL", assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(e, f"{e}: {d}") for e, d in EVENTS.items()], widget=forms.CheckboxSelectMultiple
    )
    description = forms.CharField(max_length=200, required=False)
    secret = forms.CharField(
        max_length=SECRET_MAX_LENGTH,
        required=False,
        validators=[validate_secret],
        help_text=f"At least {SECRET_MIN_LENGTH} characters; leave empty to generate one.",
    )


@login_required
def webhook_list(request: HttpRequest) -> HttpResponse:
    subscriptions = visible_subscriptions(request.user).order_by("id")
    form = SubscriptionForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            created = services.create_subscription(actor=actor_for(request), **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form = SubscriptionForm()
    status = 400 if request.method == "POST" and created is None else 200
    return render(
        request,
        "webhooks/list.html",
        {"subscriptions": subscriptions, "form": form, "created": created},
        status=status,
    )


@login_required
def webhook_detail(request: HttpRequest, pk: int) -> HttpResponse:
    subscription = access_subscription(request.user, pk)
    deliveries = subscription.deliveries.prefetch_related("attempt_log").order_by("-id")[:100]
    return render(request, "webhooks/detail.html", {"subscription": subscription, "deliveries": deliveries})


@login_required
@require_POST
def webhook_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    subscription = access_subscription(request.user, pk)
    services.update_subscription(actor=actor_for(request), subscription=subscription, active=not subscription.active)
    return redirect("webhook-detail", pk=pk)


@login_required
@require_POST
def webhook_redeliver(request: HttpRequest, pk: int) -> HttpResponse:
    delivery = access_delivery(request.user, pk)
    services.redeliver(actor=actor_for(request), delivery=delivery)
    messages.success(request, f"Delivery {delivery.pk} queued again.")
    return redirect("webhook-detail", pk=delivery.subscription_id)
