from django.urls import path

from outcomes import views

urlpatterns = [
    path("", views.outcome_metrics, name="outcome-metrics"),
    path("<slug:key>.csv", views.outcome_csv, name="outcome-metrics-csv"),
]
