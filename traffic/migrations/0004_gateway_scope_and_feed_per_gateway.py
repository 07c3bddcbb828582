"""Issue 17: a gateway speaks only for what its scope covers, and feed freshness is kept per
gateway and identity.

Existing gateways are scoped to the one environment they were registered for (the operator
said so at creation; widen or narrow it by registering a new gateway). The old feed rows are
dropped, not carried over: any gateway could have written them, about any identity, so they
prove nothing. Stale revocation therefore notices nothing until a covering gateway has
reported for a whole window again: the safe direction (a missing feed never revokes).
"""

import django.db.models.deletion
from django.db import migrations, models


def scope_to_registered_environment(apps, schema_editor):  # type: ignore[no-untyped-def]
    EgressGateway = apps.get_model("traffic", "EgressGateway")
    for gateway in EgressGateway.objects.all():
        if not gateway.scope_environments:
            gateway.scope_environments = [gateway.environment]
            gateway.save(update_fields=["scope_environments"])


class Migration(migrations.Migration):
    dependencies = [
        ("traffic", "0003_observed_flow"),
    ]

    operations = [
        migrations.AddField(
            model_name="egressgateway",
            name="scope_environments",
            field=models.JSONField(default=list),
        ),
        migrations.AddField(
            model_name="egressgateway",
            name="scope_identity_prefixes",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="egressgateway",
            name="scope_namespaces",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="egressgateway",
            name="scope_teams",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(scope_to_registered_environment, migrations.RunPython.noop),
        migrations.AddField(
            model_name="ingestbatch",
            name="out_of_scope",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="ingestbatch",
            name="unknown_revision",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.DeleteModel(name="IdentityFeed"),
        migrations.CreateModel(
            name="IdentityFeed",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("identity", models.CharField(max_length=300)),
                ("first_seen", models.DateTimeField()),
                ("last_seen", models.DateTimeField()),
                (
                    "gateway",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="identities",
                        to="traffic.egressgateway",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("identity", "gateway"), name="one_feed_per_identity_gateway")
                ],
            },
        ),
    ]
