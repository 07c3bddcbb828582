"""Egress gateways are products: registered with an owner and a contract, and a token kept hashed."""

from __future__ import annotations

import hashlib
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client

from audit.models import AuditEvent
from audit.services import SYSTEM
from traffic.models import EgressGateway
from traffic.services.gateways import create_gateway, find_gateway

pytestmark = pytest.mark.django_db


def test_create_gateway_command_prints_the_token_last_and_stores_only_its_hash(team: Any) -> None:
    out = StringIO()
    call_command("create_gateway", "eu-nat", "--kind", "nat", "--environment", "prod", "--team", "payments", stdout=out)
    token = out.getvalue().strip().splitlines()[-1]
    assert token.startswith("egw_")
    gateway = EgressGateway.objects.get(name="eu-nat")
    assert gateway.owner_team == team and gateway.kind == "nat" and gateway.environment == "prod"
    assert token not in str(list(EgressGateway.objects.values()))
    assert gateway.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert find_gateway(token) == gateway and find_gateway(token[:-1] + "x") is None
    event = AuditEvent.objects.get(action="gateway.created")
    assert event.object_id == str(gateway.pk) and event.after["name"] == "eu-nat"


def test_create_gateway_refuses_bad_names_with_the_reason(gateway: Any) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="exists already"):
        call_command("create_gateway", "eu-proxy", "--kind", "proxy", "--environment", "prod", stdout=StringIO())
    with pytest.raises(CommandError, match="lowercase"):
        call_command("create_gateway", "EU Proxy!", "--kind", "proxy", "--environment", "prod", stdout=StringIO())


def test_everyone_reads_the_gateway_page_and_only_admins_register(
    client: Client, requester: Any, gateway: Any, django_user_model: Any
) -> None:
    gateway.contract = "Carries HTTPS only; preserves X-Request-Id."
    gateway.save()
    client.force_login(requester)
    assert "eu-proxy" in client.get("/gateways/").content.decode()
    assert "preserves X-Request-Id" in client.get("/gateways/eu-proxy/").content.decode()
    assert client.get("/gateways/new/").status_code == 403
    admin = django_user_model.objects.create_superuser("root", "root@example.org", "pw-not-used-123")
    client.force_login(admin)
    response = client.post(
        "/gateways/new/", {"name": "istio-egress", "kind": "istio", "environment": "prod", "contact": "#netops"}
    )
    body = response.content.decode()
    token = body.split("<pre><code>")[1].split("</code>")[0]
    assert find_gateway(token) == EgressGateway.objects.get(name="istio-egress")
    assert AuditEvent.objects.filter(action="gateway.created", actor_id=admin.pk).exists()


def test_the_registration_form_binds_the_scope_and_the_page_shows_it(
    client: Client, team: Any, django_user_model: Any
) -> None:
    admin = django_user_model.objects.create_superuser("root", "root@example.org", "pw-not-used-123")
    client.force_login(admin)
    client.post(
        "/gateways/new/",
        {
            "name": "stg-node",
            "kind": "cilium",
            "environment": "staging",
            "environments": ["dev"],
            "teams": [team.slug],
            "namespaces": "payments, search",
            "identity_prefixes": "spiffe://cluster.local/\n",
        },
    )
    gateway = EgressGateway.objects.get(name="stg-node")
    assert (gateway.scope_environments, gateway.scope_teams) == (["staging", "dev"], [team.slug])
    assert (gateway.scope_namespaces, gateway.scope_identity_prefixes) == (
        ["payments", "search"],
        ["spiffe://cluster.local/"],
    )
    page = client.get("/gateways/stg-node/").content.decode()
    assert "environment dev, staging; team payments; namespace payments, search" in page


def test_a_scope_value_that_is_not_printable_is_refused_with_the_field(db: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        create_gateway(actor=SYSTEM, name="x-node", kind="cilium", environment="dev", identity_prefixes=["spiffe\x00"])
    assert "identity prefix is 1 to 300 printable characters" in caught.value.message_dict["identity_prefixes"][0]
