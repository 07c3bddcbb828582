"""A ticketing tool files for the ticket's reporter: the reporter is the requester."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from exceptions.models import ExceptionRequest
from exceptions.tokens import create_token
from tests.api_problems import field_errors, problem
from tests.exceptions.test_tokens import payload
from tests.factories import ApproverGroupFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def bearer(user: Any, *scopes: str) -> APIClient:
    _, key = create_token(actor=user, user=user, name="jira", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def body(workload: Any, **extra: Any) -> dict[str, Any]:
    return {**payload(workload), **extra}


@pytest.fixture
def bot(db: Any) -> Any:
    return UserFactory(username="jira-bot")


def test_filed_for_a_team_member_makes_them_the_requester_and_audit_names_both(
    bot: Any, requester: Any, workload: Any
) -> None:
    client = bearer(bot, "requests:write", "requests:on-behalf-of")
    response = client.post("/api/v1/requests/", body(workload, requester="alice@example.org"), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["requester"] == "alice"
    created = ExceptionRequest.objects.get(pk=response.json()["id"])
    assert created.requester == requester
    event = AuditEvent.objects.get(action="request.submitted", object_id=str(created.pk))
    assert event.actor_id == bot.pk and "jira" in event.actor_label
    assert event.after["on_behalf_of"] == "alice"


def test_the_person_filed_for_cannot_approve_it(bot: Any, approver: Any, team: Any, workload: Any) -> None:
    MembershipFactory(team=team, user=approver)  # the ticket's reporter is also an approver
    other = UserFactory(username="erin")
    ApproverGroupFactory(name="Second approvers", teams=[team], members=[other])
    client = bearer(bot, "requests:write", "requests:on-behalf-of")
    request_id = client.post("/api/v1/requests/", body(workload, requester="bob"), format="json").json()["id"]
    own = APIClient()
    own.force_authenticate(approver)
    refused = own.post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")
    assert "Separation of duties" in problem(refused, 403)["detail"]
    other_client = APIClient()
    other_client.force_authenticate(other)
    assert other_client.post(f"/api/v1/requests/{request_id}/approve/", {}, format="json").status_code == 200


def test_without_the_scope_the_field_is_refused_not_ignored(bot: Any, requester: Any, workload: Any) -> None:
    MembershipFactory(team=workload.team, user=bot)
    client = bearer(bot, "requests:write")
    errors = field_errors(client.post("/api/v1/requests/", body(workload, requester="alice"), format="json"))
    assert "requests:on-behalf-of" in errors["requester"][0]
    assert ExceptionRequest.objects.count() == 0


def test_a_session_user_cannot_name_another_requester(requester: Any, teammate: Any, workload: Any) -> None:
    client = APIClient()
    client.force_authenticate(requester)
    errors = field_errors(client.post("/api/v1/requests/", body(workload, requester="dave"), format="json"))
    assert list(errors) == ["requester"]


def test_the_person_must_belong_to_the_workloads_team(bot: Any, outsider: Any, workload: Any) -> None:
    client = bearer(bot, "requests:write", "requests:on-behalf-of")
    errors = field_errors(client.post("/api/v1/requests/", body(workload, requester="charlie"), format="json"))
    assert list(errors) == ["workload"]
    assert ExceptionRequest.objects.count() == 0


def test_an_unknown_person_is_named_in_the_error(bot: Any, requester: Any, workload: Any) -> None:
    client = bearer(bot, "requests:write", "requests:on-behalf-of")
    errors = field_errors(client.post("/api/v1/requests/", body(workload, requester="nobody@x.example"), format="json"))
    assert "nobody@x.example" in errors["requester"][0]


def test_the_service_refuses_a_person_outside_the_team(bot: Any, outsider: Any, workload: Any) -> None:
    from datetime import timedelta

    from django.core.exceptions import ValidationError

    from exceptions.services.requests import submit_request

    with pytest.raises(ValidationError) as refused:
        submit_request(
            actor=bot,
            workload=workload,
            destinations=[{"host": "api.partner.example", "port": 443}],
            purpose="partner_api",
            data_class="internal",
            justification="Filed from ticket CHG-7 for the reporter, who owns the partner integration.",
            lifetime=timedelta(hours=24),
            on_behalf_of=outsider,
        )
    assert "charlie" in refused.value.message_dict["requester"][0]
    assert ExceptionRequest.objects.count() == 0


def test_the_integration_that_filed_cannot_approve_it(bot: Any, requester: Any, team: Any, workload: Any) -> None:
    ApproverGroupFactory(name="Bot approvers", teams=[team], members=[bot])
    client = bearer(bot, "requests:write", "requests:on-behalf-of", "requests:decide")
    request_id = client.post("/api/v1/requests/", body(workload, requester="alice"), format="json").json()["id"]
    refused = client.post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")
    assert "for someone else" in problem(refused, 403)["detail"]


def test_the_service_refuses_on_behalf_of_without_the_scope(bot: Any, requester: Any, workload: Any) -> None:
    from datetime import timedelta

    from django.core.exceptions import PermissionDenied

    from exceptions.services.requests import submit_request
    from foundation.actors import TOKEN, Actor

    actor = Actor(user=bot, via=TOKEN, token_name="jira", token_scopes=("requests:write",))
    with pytest.raises(PermissionDenied):
        submit_request(
            actor=actor,
            workload=workload,
            destinations=[{"host": "api.partner.example", "port": 443}],
            purpose="partner_api",
            data_class="internal",
            justification="Filed from ticket CHG-7 for the reporter, who owns the partner integration.",
            lifetime=timedelta(hours=24),
            on_behalf_of=requester,
        )
    assert ExceptionRequest.objects.count() == 0
