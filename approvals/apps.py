from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # A bad approval policy must stop the process before it serves a
        # single request: nobody may approve against rules that do not parse.
        from allauth.mfa.signals import authentication_failed

        from approvals.policy import PolicyError, current_policy
        from egress_portal.mfa import on_authentication_failed

        authentication_failed.connect(on_authentication_failed, dispatch_uid="egress-mfa-refused")

        try:
            current_policy()
        except PolicyError as exc:
            raise ImproperlyConfigured(f"Approval policy: {exc}") from exc
