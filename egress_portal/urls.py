from django.contrib import admin
from django.urls import include, path, re_path

from egress_portal.health import healthz, readyz
from egress_portal.metrics import metrics
from foundation.problems import UnknownRoute

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/ingest/", include("traffic.ingest_urls")),
    path("api/v1/", include("egress_portal.api")),
    re_path(r"^api/", UnknownRoute.as_view()),
    path("audit/", include("audit.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("outcomes/", include("outcomes.urls")),
    path("approvals/", include("approvals.urls")),
    path("", include("traffic.urls")),
    path("", include("exceptions.urls")),
]
