"""Paging for every API list: limit and offset read by the portal's bounded parser."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from exceptions.validators import PAGE_LIMIT, PAGE_OFFSET, IntBounds, parse_bounded_int


def query_int(request: Request, name: str, bounds: IntBounds, default: int) -> int:
    """One query-string number, or a 400 naming the parameter."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse_bounded_int(raw, bounds)
    except DjangoValidationError as exc:
        raise serializers.ValidationError({name: exc.messages}) from exc


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's limit/offset paging, except that a bad or huge limit or offset is a
    400 naming the parameter rather than being ignored or reaching the database."""

    default_limit = 50
    max_limit = PAGE_LIMIT.maximum

    def get_limit(self, request: Request) -> int:
        return query_int(request, self.limit_query_param, PAGE_LIMIT, self.default_limit)

    def get_offset(self, request: Request) -> int:
        return query_int(request, self.offset_query_param, PAGE_OFFSET, 0)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            bounds = PAGE_LIMIT if parameter["name"] == self.limit_query_param else PAGE_OFFSET
            parameter["schema"].update(minimum=bounds.minimum, maximum=bounds.maximum)
        return parameters
