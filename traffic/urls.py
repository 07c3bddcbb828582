from django.urls import path

from traffic import views

urlpatterns = [
    path("gateways/", views.gateway_list, name="gateway-list"),
    path("gateways/new/", views.gateway_create, name="gateway-create"),
    path("gateways/<slug:name>/", views.gateway_detail, name="gateway-detail"),
    path("workloads/<int:pk>/traffic/", views.workload_traffic, name="workload-traffic"),
    path("grants/<int:pk>/keep/", views.grant_keep, name="grant-keep"),
    path("operations/", views.operations, name="operations"),
    path("operations/outbox/retry/", views.operations_retry, name="operations-retry"),
    path("operations/sweep/", views.operations_sweep, name="operations-sweep"),
]
