"""REST endpoints for requests and grants: thin wrappers around the services."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from exceptions import selectors
from exceptions.access import access_grant, access_request, requestable_workloads, visible_grants
from exceptions.api.base import (
    GRANT,
    LIFETIME_AS_HOURS,
    REQUEST,
    IntegrationView,
    api_field_names,
    render_created,
    render_request,
    request_queryset,
)
from exceptions.api.pagination import BoundedLimitOffsetPagination, RequestCursorPagination
from exceptions.api.serializers import (
    CommentInputSerializer,
    CommentSerializer,
    ExceptionRequestSerializer,
    GrantSerializer,
    ReasonInputSerializer,
    RenewInputSerializer,
    RequestInputSerializer,
    RequestListQuery,
    WorkloadSerializer,
    flat_errors,
)
from exceptions.models import ExceptionRequest, Grant, Workload
from exceptions.services import grants, requests
from exceptions.services.comments import add_comment
from foundation.actors import actor_for


class WorkloadList(generics.ListAPIView[Workload], IntegrationView):
    """Workloads the caller may file requests for."""

    required_scopes = {"GET": "requests:read"}
    serializer_class = WorkloadSerializer

    def get_queryset(self) -> QuerySet[Workload]:
        return requestable_workloads(self.request.user)


class RequestListCreate(IntegrationView):
    required_scopes = {"GET": "requests:read", "POST": "requests:write"}
    pagination_class = RequestCursorPagination

    @extend_schema(parameters=[RequestListQuery], responses=ExceptionRequestSerializer(many=True))
    def get(self, request: Request) -> Response:
        query = RequestListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        queryset = selectors.filter_requests(request_queryset(request.user), user=request.user, **query.validated_data)
        paginator = RequestCursorPagination()
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
        with api_field_names(LIFETIME_AS_HOURS):
            created = self._submit(request, data, payload, renews)
        return render_created(request.user, created)

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
            on_behalf_of=data.get("requester"),
        )


class RequestDetail(IntegrationView):
    etag_kind = REQUEST
    required_scopes = {"GET": "requests:read"}

    @extend_schema(responses=ExceptionRequestSerializer)
    def get(self, request: Request, pk: int) -> Response:
        access_request(request.user, pk)
        return render_request(request.user, pk)


class RequestCancel(IntegrationView):
    etag_kind = REQUEST
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


class GrantList(IntegrationView):
    required_scopes = {"GET": "grants:read"}
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "view", str, enum=list(selectors.GRANT_VIEWS), description="Which grants (default: active)."
            )
        ],
        responses=GrantSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        view = request.query_params.get("view", "active")
        if view not in selectors.GRANT_VIEWS:
            raise serializers.ValidationError({"view": [f"Use one of: {', '.join(selectors.GRANT_VIEWS)}."]})
        queryset = selectors.grant_list(request.user, view=view, now=timezone.now())
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(GrantSerializer(page, many=True, context={"user": request.user}).data)


class GrantDetail(IntegrationView):
    etag_kind = GRANT
    required_scopes = {"GET": "grants:read"}

    @extend_schema(responses=GrantSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(GrantSerializer(access_grant(request.user, pk), context={"user": request.user}).data)


class GrantRevoke(IntegrationView):
    etag_kind = GRANT
    required_scopes = {"POST": "grants:revoke"}

    @extend_schema(request=ReasonInputSerializer, responses=GrantSerializer)
    def post(self, request: Request, pk: int) -> Response:
        grant = access_grant(request.user, pk, "revoke")
        payload = ReasonInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        revoked = grants.revoke_grant(actor=actor_for(request), grant=grant, reason=payload.validated_data["reason"])
        return Response(GrantSerializer(get_object_or_404(Grant, pk=revoked.pk), context={"user": request.user}).data)


class RequestSubmit(IntegrationView):
    """Submit a draft for approval."""

    required_scopes = {"POST": "requests:write"}
    etag_kind = REQUEST

    @extend_schema(request=None, responses=ExceptionRequestSerializer)
    def post(self, request: Request, pk: int) -> Response:
        exception_request = access_request(request.user, pk)
        requests.submit_draft(actor=actor_for(request), request=exception_request)
        return render_request(request.user, pk)


class RequestComments(IntegrationView):
    """The request's comments: whoever may see the request reads them; those who take part add them."""

    required_scopes = {"GET": "requests:read", "POST": "requests:write"}
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(responses=CommentSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        exception_request = access_request(request.user, pk)
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(
            exception_request.comments.select_related("author").order_by("created_at", "id"), request, view=self
        )
        return paginator.get_paginated_response(CommentSerializer(page, many=True).data)

    @extend_schema(request=CommentInputSerializer, responses={201: CommentSerializer})
    def post(self, request: Request, pk: int) -> Response:
        exception_request = access_request(request.user, pk)
        payload = CommentInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        comment = add_comment(actor=actor_for(request), request=exception_request, body=payload.validated_data["body"])
        return Response(
            CommentSerializer(comment).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/requests/{pk}/comments/"},
        )


def grant_destination(grant: Grant) -> dict[str, Any]:
    return {"host": grant.host, "port": grant.port, "protocol": grant.protocol, "tls_required": grant.tls_required}


class GrantRenew(IntegrationView):
    """File a renewal: a new request for the grant's workload and destination, linked to the grant."""

    required_scopes = {"POST": "requests:write"}
    etag_kind = GRANT

    @extend_schema(request=RenewInputSerializer, responses={201: ExceptionRequestSerializer})
    def post(self, request: Request, pk: int) -> Response:
        grant = access_grant(request.user, pk)
        payload = RenewInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        original = grant.request
        with api_field_names(LIFETIME_AS_HOURS):
            created = requests.submit_request(
                actor=actor_for(request),
                workload=grant.workload,
                destinations=[grant_destination(grant)],
                purpose=original.purpose,
                data_class=original.data_class,
                justification=data["justification"],
                ticket_ref=data["ticket_ref"] or original.ticket_ref,
                lifetime=timedelta(hours=data["lifetime_hours"]),
                desired_start=data["desired_start"],
                renews=grant,
            )
        return render_created(request.user, created)
