from django.contrib import admin
from django.urls import include, path, re_path

from egress_portal.health import healthz, readyz
from egress_portal.metrics import metrics
from egress_portal.problems import UnknownRoute

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/ingest/", include("egress_portal.traffic.ingest_urls")),
    path("api/v1/", include("egress_portal.api")),
    re_path(r"^api/", UnknownRoute.as_view()),
    path("audit/", include("audit.urls")),
    path("webhooks/", include("egress_portal.webhooks.urls")),
    path("outcomes/", include("outcomes.urls")),
    path("approvals/", include("approvals.urls")),
    path("", include("egress_portal.traffic.urls")),
    path("", include("exceptions.urls")),
]
