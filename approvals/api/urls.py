from django.urls import path

from approvals.api import views

urlpatterns = [
    path("requests/<int:pk>/approve/", views.Approve.as_view(), name="api-request-approve"),
    path("requests/<int:pk>/reject/", views.Reject.as_view(), name="api-request-reject"),
    path("requests/<int:pk>/request-changes/", views.RequestChanges.as_view(), name="api-request-changes"),
    path("requests/<int:pk>/resubmit/", views.Resubmit.as_view(), name="api-request-resubmit"),
    path("grants/<int:pk>/do-not-renew/", views.GrantDoNotRenew.as_view(), name="api-grant-do-not-renew"),
    path("grants/<int:pk>/shorten/", views.GrantShorten.as_view(), name="api-grant-shorten"),
    path("break-glass/", views.BreakGlass.as_view(), name="api-breakglass"),
]
