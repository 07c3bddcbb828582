from django.apps import AppConfig


class TrafficConfig(AppConfig):
    name = "traffic"
    label = "traffic"
    verbose_name = "Egress gateways and observed traffic"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The core's grant pages and API show the last observed traffic per grant.
        from audit import hooks as audit_hooks
        from exceptions import hooks
        from traffic.audit_subjects import team_subjects
        from traffic.jobs import unrecovered_failure
        from traffic.selectors import grants_last_seen

        hooks.grants_last_seen.register(grants_last_seen)
        # The audit viewer: a team's egress points, and whether the checkpoint job is failing.
        audit_hooks.team_subjects.register(team_subjects)
        audit_hooks.job_last_failure.register(unrecovered_failure)
