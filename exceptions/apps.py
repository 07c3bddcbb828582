from django.apps import AppConfig


class ExceptionsConfig(AppConfig):
    name = "exceptions"
    verbose_name = "Egress exceptions"

    def ready(self) -> None:
        from audit import hooks as audit_hooks
        from exceptions import audit_subjects
        from exceptions.api import schema  # noqa: F401 - registers the OpenAPI auth extension

        # The audit viewer reads events by team and ticket and links requests to grants.
        audit_hooks.readers.register(audit_subjects.CoreReaders())
        audit_hooks.team_subjects.register(audit_subjects.team_subjects)
        audit_hooks.ticket_subjects.register(audit_subjects.ticket_subjects)
        audit_hooks.related_subjects.register(audit_subjects.related_subjects)
