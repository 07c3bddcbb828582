from django.apps import AppConfig


class OutcomesConfig(AppConfig):
    name = "outcomes"
    verbose_name = "Outcome metrics"

    def ready(self) -> None:
        # Time to policy update: observed when a publish pushes and when an engine first reports.
        from exceptions import hooks as core_hooks
        from outcomes.policy_update import on_engine_revisions_seen, on_publication_pushed
        from traffic import hooks as traffic_hooks

        core_hooks.publication_pushed.register(on_publication_pushed)
        traffic_hooks.engine_revisions_seen.register(on_engine_revisions_seen)
