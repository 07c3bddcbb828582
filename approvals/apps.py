from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # A bad approval policy must stop the process before it serves a
        # single request: nobody may approve against rules that do not parse.
        from allauth.mfa.signals import authentication_failed

        from approvals.mfa import on_authentication_failed, reencrypt_mfa_secrets
        from approvals.policy import PolicyError, current_policy

        authentication_failed.connect(on_authentication_failed, dispatch_uid="egress-mfa-refused")
        # `manage.py reencrypt_secrets` seals the MFA seeds again through this hook (key rotation).
        from foundation.encryption import reencryptors

        reencryptors.register(reencrypt_mfa_secrets)
        # The core asks its questions of approvals through this port (exceptions/hooks.py).
        from approvals.port import ApprovalsAnswers
        from exceptions import hooks

        hooks.approvals.register(ApprovalsAnswers())

        try:
            current_policy()
        except PolicyError as exc:
            raise ImproperlyConfigured(f"Approval policy: {exc}") from exc
