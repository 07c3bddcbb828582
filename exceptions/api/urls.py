from django.urls import path

from exceptions.api import bundle, views
from exceptions.api.preflight import Preflight

urlpatterns = [
    path("workloads/", views.WorkloadList.as_view(), name="api-workloads"),
    path("requests/", views.RequestListCreate.as_view(), name="api-requests"),
    path("requests/<int:pk>/", views.RequestDetail.as_view(), name="api-request-detail"),
    path("requests/<int:pk>/cancel/", views.RequestCancel.as_view(), name="api-request-cancel"),
    path("requests/<int:pk>/submit/", views.RequestSubmit.as_view(), name="api-request-submit"),
    path("requests/<int:pk>/comments/", views.RequestComments.as_view(), name="api-request-comments"),
    path("grants/", views.GrantList.as_view(), name="api-grants"),
    path("grants/<int:pk>/", views.GrantDetail.as_view(), name="api-grant-detail"),
    path("grants/<int:pk>/revoke/", views.GrantRevoke.as_view(), name="api-grant-revoke"),
    path("grants/<int:pk>/renew/", views.GrantRenew.as_view(), name="api-grant-renew"),
    path("explain/", bundle.Explain.as_view(), name="api-explain"),
    path("requests/<int:pk>/preview/", bundle.RequestPreview.as_view(), name="api-request-preview"),
    path("preflight/", Preflight.as_view(), name="api-preflight"),
    path("bundles/publications/", bundle.Publications.as_view(), name="api-publications"),
]
