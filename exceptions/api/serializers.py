"""Input serializers validate shape; services validate the domain; output serializers render."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rest_framework import serializers

from exceptions.choices import DataClass, Protocol, Purpose
from exceptions.models import ExceptionRequest, Grant, RequestDestination, Workload


class DestinationInputSerializer(serializers.Serializer[dict[str, Any]]):
    host = serializers.CharField(max_length=300)
    port = serializers.IntegerField()
    protocol = serializers.ChoiceField(choices=Protocol.choices, default=Protocol.TCP)
    tls_required = serializers.BooleanField(default=True)


class RequestInputSerializer(serializers.Serializer[dict[str, Any]]):
    workload = serializers.PrimaryKeyRelatedField(queryset=Workload.objects.all())
    destinations = DestinationInputSerializer(many=True, allow_empty=False)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    data_class = serializers.ChoiceField(choices=DataClass.choices)
    justification = serializers.CharField()
    ticket_ref = serializers.CharField(required=False, allow_blank=True, default="")
    lifetime_hours = serializers.IntegerField(min_value=1)
    desired_start = serializers.DateTimeField(required=False, allow_null=True, default=None)
    renews = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="id of the grant renewed"
    )
    draft = serializers.BooleanField(default=False)

    def lifetime(self) -> timedelta:
        return timedelta(hours=self.validated_data["lifetime_hours"])


class ReasonInputSerializer(serializers.Serializer[dict[str, Any]]):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class DestinationSerializer(serializers.ModelSerializer[RequestDestination]):
    class Meta:
        model = RequestDestination
        fields = ["host", "port", "protocol", "tls_required"]


class WorkloadSerializer(serializers.ModelSerializer[Workload]):
    team = serializers.CharField(source="team.slug")

    class Meta:
        model = Workload
        fields = ["id", "name", "team", "identity", "identity_kind", "environment", "role", "sensitivity"]


class GrantListSerializer(serializers.ListSerializer[Grant]):
    """Reads the last observed traffic of a whole page of grants in one query."""

    def to_representation(self, data: Any) -> list[Any]:
        from egress_portal.traffic.selectors import grants_last_seen

        grants = list(data.all() if hasattr(data, "all") else data)
        self.child.context["last_seen"] = grants_last_seen([g.pk for g in grants])  # type: ignore[union-attr]
        return super().to_representation(grants)


class GrantSerializer(serializers.ModelSerializer[Grant]):
    last_seen = serializers.SerializerMethodField(help_text="When a gateway last reported traffic through it.")

    class Meta:
        model = Grant
        fields = [
            "id",
            "identity",
            "host",
            "port",
            "protocol",
            "tls_required",
            "valid_from",
            "expires_at",
            "status",
            "request",
            "revoked_at",
            "revoke_reason",
            "last_seen",
        ]
        list_serializer_class = GrantListSerializer

    def get_last_seen(self, grant: Grant) -> datetime | None:
        from egress_portal.traffic.selectors import grant_last_seen

        page: dict[int, datetime] | None = self.context.get("last_seen")
        return page.get(grant.pk) if page is not None else grant_last_seen(grant)


class ExceptionRequestSerializer(serializers.ModelSerializer[ExceptionRequest]):
    workload = WorkloadSerializer()
    destinations = DestinationSerializer(many=True)
    grants = GrantSerializer(many=True)
    requester = serializers.CharField(source="requester.get_username")
    decided_by = serializers.CharField(source="decided_by.get_username", default=None)
    lifetime_hours = serializers.SerializerMethodField()

    class Meta:
        model = ExceptionRequest
        fields = [
            "id",
            "status",
            "workload",
            "destinations",
            "purpose",
            "data_class",
            "justification",
            "ticket_ref",
            "lifetime_hours",
            "desired_start",
            "risk_tier",
            "risk_reasons",
            "requester",
            "decided_by",
            "decided_at",
            "decision_reason",
            "grants",
            "created_at",
            "updated_at",
        ]

    def get_lifetime_hours(self, obj: ExceptionRequest) -> int:
        return int(obj.lifetime.total_seconds() // 3600)
