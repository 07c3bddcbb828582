"""Forms of the decision buttons; the services decide what is valid."""

from __future__ import annotations

from datetime import timedelta

from django import forms

from exceptions.choices import Environment, Purpose, RiskTier
from exceptions.forms import BoundedIntegerField
from exceptions.validators import LIFETIME_HOURS


class DecisionForm(forms.Form):
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    # Narrowing before approving: a shorter lifetime, and only the destinations kept.
    lifetime_hours = BoundedIntegerField(bounds=LIFETIME_HOURS, required=False, label="Lifetime (hours)")
    keep = forms.TypedMultipleChoiceField(required=False, coerce=int, choices=[])
    narrow = forms.BooleanField(required=False)
    confirm = forms.BooleanField(required=False)

    def __init__(self, *args: object, destination_ids: list[int] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["keep"]
        assert isinstance(field, forms.TypedMultipleChoiceField)
        field.choices = [(i, str(i)) for i in destination_ids or []]

    def narrowing(self) -> tuple[timedelta | None, list[int] | None]:
        if not self.cleaned_data.get("narrow"):
            return None, None
        hours = self.cleaned_data.get("lifetime_hours")
        return (timedelta(hours=hours) if hours else None), list(self.cleaned_data.get("keep") or [])


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
