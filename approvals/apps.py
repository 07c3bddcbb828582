from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # A bad approval policy must stop the process before it serves a
        # single request: nobody may approve against rules that do not parse.
        from approvals.policy import PolicyError, current_policy

        try:
            current_policy()
        except PolicyError as exc:
            raise ImproperlyConfigured(f"Approval policy: {exc}") from exc
