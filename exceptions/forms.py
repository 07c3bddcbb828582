"""HTML forms parse input; the services decide what is valid in the domain."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from exceptions.choices import DataClass, Protocol, Purpose
from exceptions.models import Workload
from exceptions.services.submissions import NO_DESTINATIONS, UNKNOWN_WORKLOAD
from exceptions.validators import (
    HOST_REQUIRED,
    LIFETIME_DAYS,
    LIFETIME_HOURS,
    OBJECT_ID,
    PORT,
    PORT_REQUIRED,
    PROTOCOL_REQUIRED,
    IntBounds,
    choice_error,
    parse_bounded_int,
    validate_identity,
)

LIFETIME_UNITS = [("days", "days"), ("hours", "hours")]


class BoundedIntegerField(forms.Field):
    """A whole number read by the portal's one bounded parser (ASCII digits only)."""

    widget = forms.NumberInput

    def __init__(self, *, bounds: IntBounds, **kwargs: Any) -> None:
        self.bounds = bounds
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        return parse_bounded_int(value, self.bounds)

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        if isinstance(widget, forms.NumberInput):
            attrs.update(min=self.bounds.minimum, max=self.bounds.maximum)
        return attrs


class WorkloadChoiceField(forms.ModelChoiceField):
    """A workload the user may file for; any other id, existing or not, gets the same answer."""

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return None
        try:
            pk = parse_bounded_int(value, OBJECT_ID)
        except ValidationError as exc:
            raise ValidationError(UNKNOWN_WORKLOAD, code="invalid_choice") from exc
        workload = self.queryset.filter(pk=pk).first() if self.queryset is not None else None
        if workload is None:
            raise ValidationError(UNKNOWN_WORKLOAD, code="invalid_choice")
        return workload


class ExceptionRequestForm(forms.Form):
    workload = WorkloadChoiceField(queryset=Workload.objects.none(), empty_label="Choose a workload…")
    purpose = forms.ChoiceField(
        choices=Purpose.choices, error_messages={"invalid_choice": choice_error("purpose", Purpose.values, "%(value)s")}
    )
    data_class = forms.ChoiceField(
        choices=DataClass.choices,
        label="Data class",
        initial=DataClass.INTERNAL,
        error_messages={"invalid_choice": choice_error("data class", DataClass.values, "%(value)s")},
    )
    # The length limits live in the service (one message for form and API); the
    # maxlength attributes only stop a browser from typing past them.
    justification = forms.CharField(
        required=False,  # the service says what an empty justification lacks
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": settings.EGRESS_JUSTIFICATION_MAX_LENGTH}),
        help_text=(
            f"At least {settings.EGRESS_JUSTIFICATION_MIN_LENGTH} characters: what the workload does at the "
            "destination and what breaks without it."
        ),
    )
    ticket_ref = forms.CharField(
        required=False,
        label="Ticket reference",
        widget=forms.TextInput(attrs={"maxlength": settings.EGRESS_TICKET_REF_MAX_LENGTH}),
    )
    # Bounded in the unit the person chose (see __init__), so the limit they read is in that unit.
    lifetime_value = BoundedIntegerField(bounds=LIFETIME_DAYS, initial=7, label="Lifetime")
    lifetime_unit = forms.ChoiceField(choices=LIFETIME_UNITS, initial="days", label="Lifetime unit")
    renews = BoundedIntegerField(bounds=OBJECT_ID, required=False, widget=forms.HiddenInput)
    desired_start = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave empty to start on approval.",
    )

    def __init__(self, *args: Any, workloads: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["workload"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = workloads if workloads is not None else Workload.objects.none()
        lifetime = self.fields["lifetime_value"]
        assert isinstance(lifetime, BoundedIntegerField)
        unit = self.data.get("lifetime_unit") if self.is_bound else None
        lifetime.bounds = LIFETIME_HOURS if unit == "hours" else LIFETIME_DAYS
        # The unit can change in the browser after rendering: no fixed max in the page.
        lifetime.widget.attrs.pop("max", None)

    def lifetime(self) -> timedelta | None:
        value = self.cleaned_data.get("lifetime_value")
        if value is None:
            return None
        unit = self.cleaned_data.get("lifetime_unit", "days")
        return timedelta(hours=value) if unit == "hours" else timedelta(days=value)


class DestinationForm(forms.Form):
    host = forms.CharField(
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": "api.partner.example"}),
        error_messages={"required": HOST_REQUIRED},
    )
    port = BoundedIntegerField(bounds=PORT, initial=443, error_messages={"required": PORT_REQUIRED})
    protocol = forms.ChoiceField(
        choices=Protocol.choices,
        initial=Protocol.TCP,
        error_messages={
            "required": PROTOCOL_REQUIRED,
            "invalid_choice": choice_error("protocol", Protocol.values, "%(value)s"),
        },
    )
    tls_required = forms.BooleanField(required=False, initial=True, label="TLS required")

    def has_changed(self) -> bool:
        # A row is filled in when it has a host: clearing the host removes the row
        # (its port and TLS box keep their defaults, so they cannot tell).
        if not self.is_bound:
            return super().has_changed()
        return bool(str(self.data.get(self.add_prefix("host"), "")).strip())


# The limit on destinations is the service's (one message for form and API);
# max_num only stops the page's "Add destination" at that many rows.
class BaseDestinationFormSet(forms.BaseFormSet):
    default_error_messages = {
        "missing_management_form": "The destination rows were not sent; reload the page and try again.",
        "too_few_forms": NO_DESTINATIONS,
        "too_many_forms": NO_DESTINATIONS,
    }

    def get_form_kwargs(self, index: int | None) -> dict[str, Any]:
        # Any row may be left empty (and is then dropped), the first included.
        return {**super().get_form_kwargs(index), "empty_permitted": True}

    def clean(self) -> None:
        if not any(form.has_changed() for form in self.forms):
            raise ValidationError(NO_DESTINATIONS, code="too_few_forms")

    def filled_forms(self) -> list[forms.Form]:
        """The rows with a host, in order: the destinations the service is given."""
        return [form for form in self.forms if form.has_changed()]


DestinationFormSet = forms.formset_factory(
    DestinationForm,
    formset=BaseDestinationFormSet,
    extra=0,
    min_num=1,
    validate_min=True,
    max_num=settings.EGRESS_MAX_DESTINATIONS,
)


def apply_service_errors(error: ValidationError, form: forms.Form, formset: forms.BaseFormSet[Any]) -> None:
    """Put a service's field-keyed errors on the matching form or destination row
    (the service numbers only the rows that were filled in)."""
    rows = formset.filled_forms() if isinstance(formset, BaseDestinationFormSet) else formset.forms
    for key, messages in error.message_dict.items():
        if key.startswith("destinations["):
            index_text, _, field = key[len("destinations[") :].partition("].")
            index = int(index_text)
            if index < len(rows) and field in rows[index].fields:
                for message in messages:
                    rows[index].add_error(field, message)
                continue
        target = "lifetime_value" if key == "lifetime" else key
        for message in messages:
            form.add_error(target if target in form.fields else None, message)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class ExplainForm(forms.Form):
    identity = forms.CharField(
        max_length=300,
        help_text="Pick one of your workloads or type a SPIFFE ID, namespace/serviceaccount, role ARN or GCP e-mail.",
        widget=forms.TextInput(attrs={"list": "identity-options", "autocomplete": "off"}),
    )
    host = forms.CharField(max_length=300)
    port = BoundedIntegerField(bounds=PORT, initial=443)
    protocol = forms.ChoiceField(choices=Protocol.choices, initial=Protocol.TCP, required=False)

    def clean_identity(self) -> str:
        # A malformed identity is a format error, not a "denied".
        identity = validate_identity(self.cleaned_data["identity"], trust_domain=settings.EGRESS_TRUST_DOMAIN)
        return identity.canonical

    def clean_protocol(self) -> str:
        return self.cleaned_data.get("protocol") or Protocol.TCP
