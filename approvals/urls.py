from django.urls import path

from approvals import views

urlpatterns = [
    path("", views.approval_queue, name="approval-queue"),
    path("policy/", views.policy_page, name="approval-policy"),
    path("<int:pk>/approve/", views.approve, name="request-approve"),
    path("<int:pk>/reject/", views.reject, name="request-reject"),
    path("<int:pk>/request-changes/", views.request_changes, name="request-changes"),
    path("<int:pk>/resubmit/", views.resubmit, name="request-resubmit"),
    path("grants/<int:pk>/do-not-renew/", views.grant_do_not_renew, name="grant-do-not-renew"),
    path("grants/<int:pk>/shorten/", views.grant_shorten, name="grant-shorten"),
]
