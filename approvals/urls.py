from django.urls import path

from approvals import views

urlpatterns = [
    path("", views.approval_queue, name="approval-queue"),
    path("<int:pk>/approve/", views.approve, name="request-approve"),
    path("<int:pk>/reject/", views.reject, name="request-reject"),
]
