from django.apps import AppConfig


class TrafficConfig(AppConfig):
    name = "egress_portal.traffic"
    label = "traffic"
    verbose_name = "Egress gateways and observed traffic"
    default_auto_field = "django.db.models.BigAutoField"
