from __future__ import annotations

from django import forms

from exceptions.choices import Environment
from exceptions.models import Team
from traffic.models import GatewayKind


class GatewayForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Lowercase letters, digits and dashes, e.g. eu-west-nat.")
    kind = forms.ChoiceField(choices=GatewayKind.choices)
    environment = forms.ChoiceField(choices=Environment.choices)
    # Its scope: what it can see. Records about other identities are refused (issue 17).
    environments = forms.MultipleChoiceField(
        choices=Environment.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Also sees environments",
    )
    teams = forms.ModelMultipleChoiceField(
        queryset=Team.objects.order_by("name"),
        to_field_name="slug",
        required=False,
        label="Only these teams' workloads",
    )
    namespaces = forms.CharField(
        required=False, label="Only these namespaces", help_text="Separated by spaces or commas."
    )
    identity_prefixes = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        label="Only identities starting with",
        help_text="One prefix a line, e.g. spiffe://prod.example.org/.",
    )
    owner_team = forms.ModelChoiceField(queryset=Team.objects.order_by("name"), required=False)
    contact = forms.CharField(max_length=200, required=False)
    slo = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, label="SLO")
    contract = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False)

    def clean_teams(self) -> list[str]:
        return [team.slug for team in self.cleaned_data["teams"]]

    def clean_namespaces(self) -> list[str]:
        return self.cleaned_data["namespaces"].replace(",", " ").split()

    def clean_identity_prefixes(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["identity_prefixes"].splitlines() if line.strip()]


class KeepForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)
