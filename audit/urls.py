from django.urls import path

from audit import exports, views

urlpatterns = [
    path("", views.audit_log, name="audit-log"),
    path("objects/<str:object_type>/<str:object_id>/", views.audit_object, name="audit-object"),
    # The original address keeps working; it now takes the page's filters too.
    path("export.jsonl", exports.export_jsonl, name="audit-export"),
    path("export/events.jsonl", exports.export_jsonl, name="audit-export-jsonl"),
    path("export/events.csv", exports.export_csv, name="audit-export-csv"),
]
