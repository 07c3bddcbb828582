from __future__ import annotations

from django import forms

from exceptions.choices import Environment
from exceptions.models import Team
from traffic.models import GatewayKind


class GatewayForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Lowercase letters, digits and dashes, e.g. eu-west-nat.")
    kind = forms.ChoiceField(choices=GatewayKind.choices)
    environment = forms.ChoiceField(choices=Environment.choices)
    owner_team = forms.ModelChoiceField(queryset=Team.objects.order_by("name"), required=False)
    contact = forms.CharField(max_length=200, required=False)
    slo = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, label="SLO")
    contract = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False)


class KeepForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)
