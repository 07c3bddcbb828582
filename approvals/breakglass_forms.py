"""The break-glass form: parses the page's fields; the service checks them."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from exceptions.models import Workload


class BreakGlassForm(forms.Form):
    workload = forms.ModelChoiceField(queryset=Workload.objects.none(), label="Workload")
    destinations = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Destinations",
        help_text="One per line as host:port, for example api.partner.example:443 (TCP, TLS).",
        max_length=4000,
    )
    incident_ref = forms.CharField(label="Incident reference", max_length=100)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Reason", max_length=2000)
    duration_hours = forms.IntegerField(label="Open for (hours)", min_value=1)
    acknowledged = forms.BooleanField(
        label="I understand security officers and the team's approvers are told now and this use is reviewed.",
        required=False,
    )

    # The maximum is a setting the service enforces; the widget only hints it.
    def __init__(self, *args: Any, workloads: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workload"].queryset = workloads  # type: ignore[attr-defined]
        maximum = settings.EGRESS_BREAKGLASS_MAX_HOURS
        self.fields["duration_hours"].widget.attrs["max"] = maximum
        self.fields["duration_hours"].initial = settings.EGRESS_BREAKGLASS_DEFAULT_HOURS

    def destination_rows(self) -> list[dict[str, Any]]:
        """``host:port`` lines as destination rows; a line without a port keeps the host so the
        service names the missing port."""
        rows: list[dict[str, Any]] = []
        for line in self.cleaned_data["destinations"].splitlines():
            line = line.strip()
            if not line:
                continue
            host, sep, port = line.rpartition(":")
            rows.append({"host": host, "port": port} if sep else {"host": line, "port": None})
        return rows
