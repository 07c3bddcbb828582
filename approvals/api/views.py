from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import services
from exceptions.access import access_request
from exceptions.api.serializers import ExceptionRequestSerializer, ReasonInputSerializer
from exceptions.api.views import render_request


class Approve(APIView):
    required_scopes = {"POST": "requests:decide"}

    @extend_schema(request=ReasonInputSerializer, responses=ExceptionRequestSerializer)
    def post(self, request: Request, pk: int) -> Response:
        exception_request = access_request(request.user, pk, "decide")
        payload = ReasonInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.approve_request(actor=request.user, request=exception_request, reason=payload.validated_data["reason"])
        return render_request(request.user, pk)


class Reject(APIView):
    required_scopes = {"POST": "requests:decide"}

    @extend_schema(request=ReasonInputSerializer, responses=ExceptionRequestSerializer)
    def post(self, request: Request, pk: int) -> Response:
        exception_request = access_request(request.user, pk, "decide")
        payload = ReasonInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.reject_request(actor=request.user, request=exception_request, reason=payload.validated_data["reason"])
        return render_request(request.user, pk)
