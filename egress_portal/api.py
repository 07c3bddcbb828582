"""The REST API router (errors: foundation.problems)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseBase
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from foundation.problems import UnknownRoute


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
    path("", include("webhooks.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SwaggerDocs.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^", UnknownRoute.as_view(), name="api-unknown"),
]
