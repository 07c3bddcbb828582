"""REST endpoints for explain, the approval preview and bundle publications."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from exceptions import hooks
from exceptions.access import access_request
from exceptions.api.base import IntegrationView
from exceptions.api.pagination import BoundedLimitOffsetPagination
from exceptions.api.serializers import BoundedIntegerField, ClosedSerializer
from exceptions.approval_preview import preview_approval
from exceptions.choices import Protocol
from exceptions.explain import explain
from exceptions.models import BundlePublication
from exceptions.validators import PORT, validate_identity
from foundation.problems import Conflict


class ExplainInputSerializer(ClosedSerializer):
    identity = serializers.CharField(max_length=300)
    host = serializers.CharField(max_length=300)
    port = BoundedIntegerField(bounds=PORT)
    protocol = serializers.ChoiceField(choices=Protocol.choices, default=Protocol.TCP)

    def validate_identity(self, value: str) -> str:
        # A malformed identity is a format error, not a "denied".
        try:
            return validate_identity(value, trust_domain=settings.EGRESS_TRUST_DOMAIN).canonical
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


ExplainOutput = inline_serializer(
    "Explanation",
    {
        "allow": serializers.BooleanField(),
        "reason": serializers.CharField(),
        "grant_id": serializers.IntegerField(allow_null=True),
        "expires_at": serializers.CharField(allow_null=True),
        "identity": serializers.CharField(),
        "host": serializers.CharField(),
        "port": serializers.IntegerField(),
        "protocol": serializers.CharField(),
        "policy_path": serializers.CharField(),
        "matched_rule": serializers.CharField(allow_null=True),
        "candidates": serializers.ListField(child=serializers.DictField()),
        "request_url": serializers.CharField(allow_null=True),
    },
)


class Explain(IntegrationView):
    required_scopes = {"GET": "explain"}

    @extend_schema(parameters=[ExplainInputSerializer], responses=ExplainOutput)
    def get(self, request: Request) -> Response:
        payload = ExplainInputSerializer(data=request.query_params)
        payload.is_valid(raise_exception=True)
        return Response(explain(**payload.validated_data, user=request.user).as_dict())


class RequestPreview(IntegrationView):
    required_scopes = {"GET": "requests:read"}
    problem_statuses = ("409",)

    @extend_schema(
        responses=inline_serializer(
            "PreviewFile",
            {
                "path": serializers.CharField(),
                "diff": serializers.CharField(),
                "applies": serializers.ChoiceField(choices=["on_approval", "at_go_live"]),
                "at": serializers.DateTimeField(allow_null=True, help_text="When an at_go_live change happens."),
            },
            many=True,
        )
    )
    def get(self, request: Request, pk: int) -> Response:
        exception_request = access_request(request.user, pk)
        if exception_request.status != "pending":
            raise Conflict("Only a pending request has an approval preview.", code="illegal_transition")
        now = timezone.now()
        go_live = hooks.approvals.get().go_live(exception_request, now=now, cache={})
        preview = preview_approval(
            exception_request, now=now, decided_by=request.user.get_username(), not_before=go_live.at
        )
        # Each file says when it changes: at the publish on approval, or at go-live.
        return Response(
            [{"path": d.path, "diff": d.diff, "applies": "on_approval", "at": None} for d in preview.on_approval]
            + [
                {"path": d.path, "diff": d.diff, "applies": "at_go_live", "at": preview.go_live}
                for d in preview.at_go_live
            ]
        )


class PublicationSerializer(serializers.ModelSerializer[BundlePublication]):
    class Meta:
        model = BundlePublication
        fields = [
            "id",
            "status",
            "revision",
            "commit",
            "trigger",
            "grant_count",
            "added",
            "removed",
            "attempts",
            "duration_ms",
            "error",
            "created_at",
        ]


class Publications(IntegrationView):
    required_scopes = {"GET": "explain"}
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(responses=PublicationSerializer(many=True))
    def get(self, request: Request) -> Response:
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(BundlePublication.objects.all(), request, view=self)
        return paginator.get_paginated_response(PublicationSerializer(page, many=True).data)
