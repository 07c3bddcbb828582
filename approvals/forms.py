"""Forms of the decision buttons; the services decide what is valid."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from exceptions.choices import Environment, Purpose, RiskTier
from exceptions.forms import BoundedIntegerField
from exceptions.models import ExceptionRequest
from exceptions.validators import LIFETIME_HOURS, narrowing_errors


class DecisionForm(forms.Form):
    """Approve, reject or request changes; approving may narrow the request first.

    Narrowing takes effect when its fields are filled: a lifetime shorter than
    requested, destinations ticked to leave out. There is no separate switch
    to "apply" them, so what the approver typed is what is approved, or the
    form refuses with the reason on the field.
    """

    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    lifetime_hours = BoundedIntegerField(
        bounds=LIFETIME_HOURS,
        required=False,
        label="Lifetime in hours",
        help_text="Leave empty to approve the lifetime requested.",
    )
    drop = forms.TypedMultipleChoiceField(required=False, coerce=int, choices=[], label="Leave out")
    confirm = forms.BooleanField(required=False)

    def __init__(self, *args: object, request: ExceptionRequest | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.exception_request = request
        self.destination_ids = [d.pk for d in request.destinations.all()] if request is not None else []
        field = self.fields["drop"]
        assert isinstance(field, forms.TypedMultipleChoiceField)
        field.choices = [(i, str(i)) for i in self.destination_ids]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.exception_request is None or self.errors:
            return cleaned
        lifetime, keep = self._narrowing(cleaned)
        errors = narrowing_errors(
            requested_lifetime=self.exception_request.lifetime,
            destination_ids=self.destination_ids,
            lifetime=lifetime,
            keep_ids=keep,
        )
        if errors:
            self.add_service_errors(ValidationError(errors))
        return cleaned

    def _narrowing(self, cleaned: dict[str, Any]) -> tuple[timedelta | None, list[int] | None]:
        hours = cleaned.get("lifetime_hours")
        drop = set(cleaned.get("drop") or [])
        keep = [i for i in self.destination_ids if i not in drop] if drop else None
        return (timedelta(hours=hours) if hours is not None else None), keep

    def narrowing(self) -> tuple[timedelta | None, list[int] | None]:
        """The lifetime and the destination ids to keep, ``None`` for what the approver left as requested."""
        return self._narrowing(self.cleaned_data)

    def add_service_errors(self, error: ValidationError) -> bool:
        """Show a refusal that names ``lifetime`` or ``destinations`` on this form, each on its field
        (any other key beside them above the form); False, and nothing added, when it names neither."""
        by_key = getattr(error, "error_dict", None) or {}
        if not set(by_key) & set(NARROWING_FIELDS):
            return False
        for key, errors in by_key.items():
            self.add_error(NARROWING_FIELDS.get(key), errors)
        return True


# The service's names for narrowing errors, and the form fields that show them.
NARROWING_FIELDS = {"lifetime": "lifetime_hours", "destinations": "drop"}


ANY = [("", "Any")]


class QueueFilterForm(forms.Form):
    environment = forms.ChoiceField(required=False, choices=ANY + Environment.choices)
    tier = forms.ChoiceField(required=False, choices=ANY + RiskTier.choices, label="Risk tier")
    team = forms.SlugField(required=False)
    purpose = forms.ChoiceField(required=False, choices=ANY + Purpose.choices)
    mine = forms.BooleanField(required=False, label="Needs my group")


class ShortenForm(forms.Form):
    expires_at = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
