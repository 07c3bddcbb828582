from django.urls import path

from exceptions import bundle_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("requests/", views.request_list, name="request-list"),
    path("requests/new/", views.request_create, name="request-create"),
    path("requests/preview/", views.request_preview, name="request-preview"),
    path("requests/<int:pk>/", views.request_detail, name="request-detail"),
    path("requests/<int:pk>/cancel/", views.request_cancel, name="request-cancel"),
    path("requests/<int:pk>/submit/", views.request_submit_draft, name="request-submit-draft"),
    path("grants/", views.grant_list, name="grant-list"),
    path("grants/<int:pk>/", views.grant_detail, name="grant-detail"),
    path("grants/<int:pk>/revoke/", views.grant_revoke, name="grant-revoke"),
    path("explain", bundle_views.explain_page, name="explain"),
    path("bundles/egress.tar.gz", bundle_views.opa_bundle, name="opa-bundle"),
    path("bundles/publications/", bundle_views.publications, name="bundle-publications"),
]
