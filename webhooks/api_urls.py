from django.urls import path

from webhooks import api

urlpatterns = [
    path("webhooks/", api.SubscriptionList.as_view(), name="api-webhooks"),
    path("webhooks/<int:pk>/", api.SubscriptionDetail.as_view(), name="api-webhook-detail"),
    path("webhooks/<int:pk>/deliveries/", api.DeliveryList.as_view(), name="api-webhook-deliveries"),
    path("webhooks/deliveries/<int:pk>/redeliver/", api.Redeliver.as_view(), name="api-webhook-redeliver"),
]
