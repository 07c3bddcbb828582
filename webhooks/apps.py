from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from exceptions.events import event_sinks
        from webhooks.events import queue_deliveries

        event_sinks.register(queue_deliveries)
