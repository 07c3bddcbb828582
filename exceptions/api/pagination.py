"""Paging for every API list: limit and offset read by the portal's bounded parser."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
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


class RequestCursorPagination(CursorPagination):
    """Cursor paging for the request list: stable under inserts, so a tool can walk
    every page (or sync with ``updated_since`` and ``ordering=updated_at``) without
    skipping or repeating rows; ``limit`` is capped like every other list's."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = PAGE_LIMIT.maximum
    ORDERINGS = {"-created_at": ("-created_at", "-id"), "updated_at": ("updated_at", "id")}

    def get_ordering(self, request: Request, queryset: Any, view: Any) -> tuple[str, ...]:
        value = request.query_params.get("ordering") or "-created_at"
        if value not in self.ORDERINGS:
            raise serializers.ValidationError({"ordering": [f"Use one of: {', '.join(self.ORDERINGS)}."]})
        return self.ORDERINGS[value]

    def get_page_size(self, request: Request) -> int:
        return query_int(request, self.page_size_query_param, PAGE_LIMIT, self.page_size)

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise serializers.ValidationError(
                {self.cursor_query_param: ["Not a cursor this API gave out; follow the 'next' or 'previous' link."]}
            ) from exc

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=PAGE_LIMIT.minimum, maximum=PAGE_LIMIT.maximum)
        return parameters
