"""Decision endpoints (through the decision gate) and resubmission: thin wrappers around the services."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from approvals import gate
from approvals.breakglass import API_REFUSAL
from exceptions.access import access_grant, access_request
from exceptions.api.base import GRANT, LIFETIME_AS_HOURS, REQUEST, IntegrationView, api_field_names, render_request
from exceptions.api.serializers import (
    BoundedIntegerField,
    ClosedSerializer,
    DestinationInputSerializer,
    ExceptionRequestSerializer,
    GrantSerializer,
    ReasonInputSerializer,
)
from exceptions.choices import DataClass, Purpose
from exceptions.services import grants
from exceptions.services.requests import resubmit_request
from exceptions.validators import LIFETIME_HOURS, OBJECT_ID
from foundation.actors import actor_for

STEP_UP_DOC = (
    "Goes through the decision gate: 409 when the request is not pending; 403 problem when the caller may not "
    "decide it (code names why: separation_of_duties, not_an_approver, outside_team_required, "
    "mfa_enrolment_required, already_approved, group_approval_given). A rule with MFA at the decision answers "
    "403 with code mfa_step_up_required, the rule, step_up_url and decide_url: an API token never gives a step-up; "
    "a person decides in the portal. A refused decision writes nothing."
)


class ApproveInputSerializer(ClosedSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    lifetime_hours = BoundedIntegerField(
        bounds=LIFETIME_HOURS, required=False, allow_null=True, default=None, help_text="Narrow: a shorter lifetime."
    )
    keep_destinations = serializers.ListField(
        child=BoundedIntegerField(bounds=OBJECT_ID),
        required=False,
        allow_null=True,
        default=None,
        help_text="Narrow: ids of the destinations to keep (the others are dropped).",
    )


class ResubmitInputSerializer(ClosedSerializer):
    destinations = DestinationInputSerializer(many=True, allow_empty=False)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    data_class = serializers.ChoiceField(choices=DataClass.choices)
    justification = serializers.CharField()
    ticket_ref = serializers.CharField(required=False, allow_blank=True, default="")
    lifetime_hours = BoundedIntegerField(bounds=LIFETIME_HOURS)
    desired_start = serializers.DateTimeField(required=False, allow_null=True, default=None)


class Approve(IntegrationView):
    etag_kind = REQUEST
    required_scopes = {"POST": "requests:decide"}

    @extend_schema(request=ApproveInputSerializer, responses=ExceptionRequestSerializer, description=STEP_UP_DOC)
    def post(self, request: Request, pk: int) -> Response:
        actor = actor_for(request)
        exception_request = gate.access_to_decide(actor, pk, gate.APPROVE)
        payload = ApproveInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        with api_field_names({**LIFETIME_AS_HOURS, "destinations": "keep_destinations"}):
            gate.decide(
                actor=actor,
                request=exception_request,
                action=gate.APPROVE,
                reason=data["reason"],
                lifetime=timedelta(hours=data["lifetime_hours"]) if data["lifetime_hours"] else None,
                keep_destination_ids=data["keep_destinations"],
            )
        return render_request(request.user, pk)


class _DecideAgainst(IntegrationView):
    """Reject or request changes: a reason is required, the decision gate checks who may and how."""

    etag_kind = REQUEST

    required_scopes = {"POST": "requests:decide"}
    action = ""

    @extend_schema(request=ReasonInputSerializer, responses=ExceptionRequestSerializer, description=STEP_UP_DOC)
    def post(self, request: Request, pk: int) -> Response:
        actor = actor_for(request)
        exception_request = gate.access_to_decide(actor, pk, self.action)
        payload = ReasonInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        reason = payload.validated_data["reason"]
        gate.decide(actor=actor, request=exception_request, action=self.action, reason=reason)
        return render_request(request.user, pk)


class Reject(_DecideAgainst):
    action = "reject"


class RequestChanges(_DecideAgainst):
    action = "request_changes"


class Resubmit(IntegrationView):
    etag_kind = REQUEST
    required_scopes = {"POST": "requests:write"}

    @extend_schema(request=ResubmitInputSerializer, responses=ExceptionRequestSerializer)
    def post(self, request: Request, pk: int) -> Response:
        exception_request = access_request(request.user, pk)
        payload = ResubmitInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        with api_field_names(LIFETIME_AS_HOURS):
            resubmit_request(
                actor=actor_for(request),
                request=exception_request,
                destinations=data["destinations"],
                purpose=data["purpose"],
                data_class=data["data_class"],
                justification=data["justification"],
                ticket_ref=data["ticket_ref"],
                lifetime=timedelta(hours=data["lifetime_hours"]),
                desired_start=data["desired_start"],
            )
        return render_request(request.user, pk)


class ShortenInputSerializer(ClosedSerializer):
    expires_at = serializers.DateTimeField()
    reason = serializers.CharField()


class GrantDoNotRenew(IntegrationView):
    etag_kind = GRANT
    required_scopes = {"POST": "grants:revoke"}

    @extend_schema(request=ReasonInputSerializer, responses=GrantSerializer)
    def post(self, request: Request, pk: int) -> Response:
        grant = access_grant(request.user, pk)
        payload = ReasonInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        changed = grants.mark_do_not_renew(
            actor=actor_for(request), grant=grant, reason=payload.validated_data["reason"]
        )
        return Response(GrantSerializer(changed, context={"user": request.user}).data)


class GrantShorten(IntegrationView):
    etag_kind = GRANT
    required_scopes = {"POST": "grants:revoke"}

    @extend_schema(request=ShortenInputSerializer, responses=GrantSerializer)
    def post(self, request: Request, pk: int) -> Response:
        grant = access_grant(request.user, pk)
        payload = ShortenInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        changed = grants.shorten_grant(
            actor=actor_for(request),
            grant=grant,
            expires_at=payload.validated_data["expires_at"],
            reason=payload.validated_data["reason"],
        )
        return Response(GrantSerializer(changed, context={"user": request.user}).data)


class BreakGlass(IntegrationView):
    """Refused for every caller: break-glass is a human action behind an MFA step-up in the portal."""

    required_scopes = {"POST": "requests:write"}

    @extend_schema(request=None, responses={403: None})
    def post(self, request: Request) -> Response:
        raise PermissionDenied(API_REFUSAL)
