from django.urls import path

from approvals import breakglass_views, views

urlpatterns = [
    path("", views.approval_queue, name="approval-queue"),
    path("policy/", views.policy_page, name="approval-policy"),
    path("<int:pk>/approve/", views.approve, name="request-approve"),
    path(
        "<int:pk>/<str:action>/after-step-up/",
        views.decide_again,
        name="request-decide-again",
    ),
    path("<int:pk>/reject/", views.reject, name="request-reject"),
    path("<int:pk>/request-changes/", views.request_changes, name="request-changes"),
    path("<int:pk>/resubmit/", views.resubmit, name="request-resubmit"),
    path("grants/<int:pk>/do-not-renew/", views.grant_do_not_renew, name="grant-do-not-renew"),
    path("grants/<int:pk>/shorten/", views.grant_shorten, name="grant-shorten"),
    path("break-glass/", breakglass_views.breakglass_page, name="breakglass"),
    path("break-glass/drill/", breakglass_views.drill_page, name="breakglass-drill"),
    path("break-glass/drills/", breakglass_views.drills_page, name="breakglass-drills"),
    path("break-glass/<int:pk>/", breakglass_views.use_detail, name="breakglass-detail"),
    path("break-glass/<int:pk>/revoke/", breakglass_views.use_revoke, name="breakglass-revoke"),
    path("break-glass/<int:pk>/review/", breakglass_views.use_review, name="breakglass-review"),
]
