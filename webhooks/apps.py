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
        # `manage.py reencrypt_secrets` seals the subscription secrets again through this hook.
        from foundation.encryption import reencryptors
        from webhooks.services import reencrypt_webhook_secrets

        reencryptors.register(reencrypt_webhook_secrets)
