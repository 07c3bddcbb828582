from django.urls import path

from webhooks import views

urlpatterns = [
    path("", views.webhook_list, name="webhook-list"),
    path("<int:pk>/", views.webhook_detail, name="webhook-detail"),
    path("<int:pk>/toggle/", views.webhook_toggle, name="webhook-toggle"),
    path("deliveries/<int:pk>/redeliver/", views.webhook_redeliver, name="webhook-redeliver"),
]
