"""The REST API router and the shared error format."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponseBase
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from exceptions.state import TransitionError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Domain errors from services become 400/409 with field-level detail."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            detail: Any = {
                field: [str(m) for e in errors for m in e.messages] for field, errors in exc.error_dict.items()
            }
        else:
            detail = {"non_field_errors": exc.messages}
        exc = drf_exceptions.ValidationError(detail)
    elif isinstance(exc, TransitionError):
        response = Response({"detail": str(exc), "code": "illegal_transition"}, status=409)
        return response
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied(str(exc) or None)
    return drf_exception_handler(exc, context)


class _LoginFirst:
    """A person who opens the docs signed out is sent to the login page, not shown a 403."""

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class SwaggerDocs(_LoginFirst, SpectacularSwaggerSplitView):
    """Swagger UI from drf-spectacular-sidecar; its start-up script is a file, never inline (CSP)."""

    template_name = "api/swagger_ui.html"


urlpatterns = [
    path("", include("exceptions.api.urls")),
    path("", include("approvals.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SwaggerDocs.as_view(url_name="api-schema"), name="api-docs"),
]
