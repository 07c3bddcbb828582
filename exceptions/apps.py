from django.apps import AppConfig


class ExceptionsConfig(AppConfig):
    name = "exceptions"
    verbose_name = "Egress exceptions"

    def ready(self) -> None:
        from exceptions.api import schema  # noqa: F401 - registers the OpenAPI auth extension
