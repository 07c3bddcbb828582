"""REST endpoints for requests and grants: thin wrappers around the services."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from egress_portal.actors import actor_for
from exceptions import selectors
from exceptions.access import access_grant, access_request, requestable_workloads, visible_grants, visible_requests
from exceptions.api.pagination import BoundedLimitOffsetPagination
from exceptions.api.serializers import (
    ExceptionRequestSerializer,
    GrantSerializer,
    ReasonInputSerializer,
    RequestInputSerializer,
    WorkloadSerializer,
    flat_errors,
)
from exceptions.choices import RequestStatus
from exceptions.models import ExceptionRequest, Grant, Workload
from exceptions.services import grants, requests


def _request_queryset(user: object) -> QuerySet[ExceptionRequest]:
    return (
        visible_requests(user)
        .select_related("workload__team", "requester", "decided_by")
        .prefetch_related("destinations", "grants__workload__team", "decisions__actor")
    )


def render_request(user: object, pk: int, *, status_code: int = status.HTTP_200_OK) -> Response:
    """The request as the API returns it, read fresh after any change."""
    serializer = ExceptionRequestSerializer(_request_queryset(user).get(pk=pk), context={"user": user})
    return Response(serializer.data, status=status_code)


class WorkloadList(generics.ListAPIView[Workload]):
    """Workloads the caller may file requests for."""

    required_scopes = {"GET": "requests:read"}
    serializer_class = WorkloadSerializer

    def get_queryset(self) -> QuerySet[Workload]:
        return requestable_workloads(self.request.user)


class RequestListCreate(APIView):
    required_scopes = {"GET": "requests:read", "POST": "requests:write"}

    @extend_schema(responses=ExceptionRequestSerializer(many=True))
    def get(self, request: Request) -> Response:
        queryset = _request_queryset(request.user)
        status_filter = request.query_params.get("status")
        if status_filter:
            if status_filter not in RequestStatus.values:
                raise serializers.ValidationError({"status": [f"Use one of: {', '.join(RequestStatus.values)}."]})
            queryset = queryset.filter(status=status_filter)
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        data = ExceptionRequestSerializer(page, many=True, context={"user": request.user}).data
        return paginator.get_paginated_response(data)

    @extend_schema(request=RequestInputSerializer, responses={201: ExceptionRequestSerializer})
    def post(self, request: Request) -> Response:
        payload = RequestInputSerializer(data=request.data, context={"request": request})
        if not payload.is_valid():
            raise serializers.ValidationError(flat_errors(payload.errors))
        data = payload.validated_data
        renews = None
        if data["renews"] is not None:
            renews = visible_grants(request.user).filter(pk=data["renews"]).first()
            if renews is None:
                raise serializers.ValidationError({"renews": ["No grant with this id that you may renew."]})
        try:
            created = self._submit(request, data, payload, renews)
        except DjangoValidationError as exc:
            # The service speaks of "lifetime"; this endpoint's field is lifetime_hours.
            raise DjangoValidationError(
                {("lifetime_hours" if key == "lifetime" else key): value for key, value in exc.message_dict.items()}
            ) from exc
        return render_request(request.user, created.pk, status_code=status.HTTP_201_CREATED)

    def _submit(
        self, request: Request, data: dict[str, Any], payload: RequestInputSerializer, renews: Grant | None
    ) -> ExceptionRequest:
        return requests.submit_request(
            actor=actor_for(request),
            workload=data["workload"],
            destinations=data["destinations"],
            purpose=data["purpose"],
            data_class=data["data_class"],
            justification=data["justification"],
            ticket_ref=data["ticket_ref"],
            lifetime=payload.lifetime(),
            desired_start=data["desired_start"],
            renews=renews,
            draft=data["draft"],
        )


class RequestDetail(APIView):
    required_scopes = {"GET": "requests:read"}

    @extend_schema(responses=ExceptionRequestSerializer)
    def get(self, request: Request, pk: int) -> Response:
        access_request(request.user, pk)
        return render_request(request.user, pk)


class RequestCancel(APIView):
    required_scopes = {"POST": "requests:write"}

    @extend_schema(request=ReasonInputSerializer, responses=ExceptionRequestSerializer)
    def post(self, request: Request, pk: int) -> Response:
        exception_request = access_request(request.user, pk, "cancel")
        payload = ReasonInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        requests.cancel_request(
            actor=actor_for(request), request=exception_request, reason=payload.validated_data["reason"]
        )
        return render_request(request.user, pk)


class GrantList(APIView):
    required_scopes = {"GET": "grants:read"}

    @extend_schema(responses=GrantSerializer(many=True))
    def get(self, request: Request) -> Response:
        view = request.query_params.get("view", "active")
        if view not in selectors.GRANT_VIEWS:
            return Response({"view": [f"Use one of: {', '.join(selectors.GRANT_VIEWS)}."]}, status=400)
        queryset = selectors.grant_list(request.user, view=view, now=timezone.now())
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(GrantSerializer(page, many=True, context={"user": request.user}).data)


class GrantDetail(APIView):
    required_scopes = {"GET": "grants:read"}

    @extend_schema(responses=GrantSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(GrantSerializer(access_grant(request.user, pk), context={"user": request.user}).data)


class GrantRevoke(APIView):
    required_scopes = {"POST": "grants:revoke"}

    @extend_schema(request=ReasonInputSerializer, responses=GrantSerializer)
    def post(self, request: Request, pk: int) -> Response:
        grant = access_grant(request.user, pk, "revoke")
        payload = ReasonInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        revoked = grants.revoke_grant(actor=actor_for(request), grant=grant, reason=payload.validated_data["reason"])
        return Response(GrantSerializer(get_object_or_404(Grant, pk=revoked.pk), context={"user": request.user}).data)
