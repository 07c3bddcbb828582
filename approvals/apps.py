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
        from approvals.selectors import approvable_requests
        from egress_portal.mfa import on_authentication_failed
        from exceptions.selectors import APPROVABLE

        authentication_failed.connect(on_authentication_failed, dispatch_uid="egress-mfa-refused")
        # The API's ?decidable=true (exceptions sits below approvals and asks through this hook).
        APPROVABLE["query"] = lambda user: approvable_requests(user, policy=current_policy())

        try:
            current_policy()
        except PolicyError as exc:
            raise ImproperlyConfigured(f"Approval policy: {exc}") from exc
