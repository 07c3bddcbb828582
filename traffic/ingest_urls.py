from django.urls import path

from traffic import api

urlpatterns = [
    path("opa/logs", api.opa_logs, name="ingest-opa-logs"),
    path("flows", api.flows, name="ingest-flows"),
]
