"""HTML forms parse input; the services decide what is valid in the domain."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from exceptions.choices import DataClass, Protocol, Purpose
from exceptions.models import Workload

LIFETIME_UNITS = [("days", "days"), ("hours", "hours")]


class ExceptionRequestForm(forms.Form):
    workload = forms.ModelChoiceField(queryset=Workload.objects.none(), empty_label="Choose a workload…")
    purpose = forms.ChoiceField(choices=Purpose.choices)
    data_class = forms.ChoiceField(choices=DataClass.choices, label="Data class", initial=DataClass.INTERNAL)
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What the workload does at the destination and what breaks without it.",
    )
    ticket_ref = forms.CharField(max_length=100, required=False, label="Ticket reference")
    lifetime_value = forms.IntegerField(min_value=1, max_value=24 * 365, initial=7, label="Lifetime")
    lifetime_unit = forms.ChoiceField(choices=LIFETIME_UNITS, initial="days", label="Lifetime unit")
    renews = forms.IntegerField(required=False, widget=forms.HiddenInput)
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

    def lifetime(self) -> timedelta | None:
        value = self.cleaned_data.get("lifetime_value")
        if value is None:
            return None
        unit = self.cleaned_data.get("lifetime_unit", "days")
        return timedelta(hours=value) if unit == "hours" else timedelta(days=value)


class DestinationForm(forms.Form):
    host = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"placeholder": "api.partner.example"}))
    port = forms.IntegerField(min_value=1, max_value=65535, initial=443)
    protocol = forms.ChoiceField(choices=Protocol.choices, initial=Protocol.TCP)
    tls_required = forms.BooleanField(required=False, initial=True, label="TLS required")


DestinationFormSet = forms.formset_factory(DestinationForm, extra=0, min_num=1, validate_min=True, max_num=20)


def apply_service_errors(error: ValidationError, form: forms.Form, formset: forms.BaseFormSet[Any]) -> None:
    """Put a service's field-keyed errors on the matching form or destination row."""
    for key, messages in error.message_dict.items():
        if key.startswith("destinations["):
            index_text, _, field = key[len("destinations[") :].partition("].")
            index = int(index_text)
            if index < len(formset.forms) and field in formset.forms[index].fields:
                for message in messages:
                    formset.forms[index].add_error(field, message)
                continue
        target = "lifetime_value" if key == "lifetime" else key
        for message in messages:
            form.add_error(target if target in form.fields else None, message)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class ExplainForm(forms.Form):
    identity = forms.CharField(max_length=300, help_text="SPIFFE ID, namespace/serviceaccount, role ARN or GCP e-mail.")
    host = forms.CharField(max_length=300)
    port = forms.IntegerField(min_value=1, max_value=65535, initial=443)
    protocol = forms.ChoiceField(choices=Protocol.choices, initial=Protocol.TCP)
