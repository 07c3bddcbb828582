"""Input serializers validate shape; services validate the domain; output serializers render."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from exceptions import hooks
from exceptions.access import requestable_workloads
from exceptions.actions import grant_actions
from exceptions.choices import DataClass, Environment, Protocol, Purpose, RequestStatus
from exceptions.models import ExceptionRequest, Grant, RequestComment, RequestDestination, Workload
from exceptions.selectors import active_person
from exceptions.services.submissions import UNKNOWN_WORKLOAD
from exceptions.tokens import token_has_scope
from exceptions.validators import (
    LIFETIME_HOURS,
    OBJECT_ID,
    PAGE_LIMIT,
    PORT,
    IntBounds,
    choice_error,
    parse_bounded_int,
)


class ClosedSerializer(serializers.Serializer[dict[str, Any]]):
    """Refuses fields it does not know, by name, instead of ignoring a typo; reported
    together with every other field's error."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, Mapping) else []
        known = ", ".join(name for name, field in self.fields.items() if not field.read_only)
        refused = {name: [f"Unknown field; the fields are: {known}."] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if refused and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **refused}) from exc
            raise
        if refused:
            raise serializers.ValidationError(refused)
        return value


class BoundedIntegerField(serializers.IntegerField):
    """A JSON integer (or a string of ASCII digits) read by the portal's one bounded parser."""

    def __init__(self, *, bounds: IntBounds, **kwargs: Any) -> None:
        self.bounds = bounds
        super().__init__(min_value=bounds.minimum, max_value=bounds.maximum, **kwargs)

    def to_internal_value(self, data: Any) -> int:
        try:
            return parse_bounded_int(data, self.bounds)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


ON_BEHALF_OF_SCOPE = "requests:on-behalf-of"


class RequesterField(serializers.CharField):
    """The person a request is filed for (username or e-mail); only tokens with the
    ``requests:on-behalf-of`` scope may name one."""

    def to_internal_value(self, data: Any) -> Any:
        request = self.context.get("request")
        if request is None or not token_has_scope(request, ON_BEHALF_OF_SCOPE):
            raise serializers.ValidationError(
                f"Only an integration token with the '{ON_BEHALF_OF_SCOPE}' scope may file for someone else; "
                "leave 'requester' out to file as yourself."
            )
        value = super().to_internal_value(data)
        if len(value) > 254:
            raise serializers.ValidationError("A username or e-mail has at most 254 characters.")
        person = active_person(value)
        if person is None:
            raise serializers.ValidationError(
                f"No active person with the username or e-mail '{value}'; give the ticket reporter's portal username."
            )
        return person


@extend_schema_field(OpenApiTypes.INT)
class RequestableWorkloadField(serializers.PrimaryKeyRelatedField[Workload]):
    """A workload the caller may file for; any other id, existing or not, gets the same answer."""

    def get_queryset(self) -> Any:
        # Filing for someone: the workloads they may file for (their membership is checked again by the service).
        if "on_behalf_of" in self.context:
            return requestable_workloads(self.context["on_behalf_of"])
        request = self.context.get("request")
        return requestable_workloads(request.user if request is not None else None)

    def to_internal_value(self, data: Any) -> Workload:
        try:
            pk = parse_bounded_int(data, OBJECT_ID)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(UNKNOWN_WORKLOAD) from exc
        workload = self.get_queryset().filter(pk=pk).first()
        if workload is None:
            raise serializers.ValidationError(UNKNOWN_WORKLOAD)
        return workload


class DestinationInputSerializer(ClosedSerializer):
    # A host, or a provider service ("aws:S3/eu-west-1"); the service checks which and words the errors.
    host = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    service = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    port = BoundedIntegerField(bounds=PORT)
    protocol = serializers.ChoiceField(
        choices=Protocol.choices,
        default=Protocol.TCP,
        error_messages={"invalid_choice": choice_error("protocol", Protocol.values, "{input}")},
    )
    tls_required = serializers.BooleanField(default=True)


class RequestInputSerializer(ClosedSerializer):
    workload = RequestableWorkloadField()
    # No max_length on the list or the texts: the service owns those limits and
    # words them the same for the HTML form.
    destinations = DestinationInputSerializer(many=True, allow_empty=False)
    purpose = serializers.ChoiceField(
        choices=Purpose.choices, error_messages={"invalid_choice": choice_error("purpose", Purpose.values, "{input}")}
    )
    data_class = serializers.ChoiceField(
        choices=DataClass.choices,
        error_messages={"invalid_choice": choice_error("data class", DataClass.values, "{input}")},
    )
    justification = serializers.CharField(required=False, allow_blank=True, default="")
    ticket_ref = serializers.CharField(required=False, allow_blank=True, default="")
    lifetime_hours = BoundedIntegerField(bounds=LIFETIME_HOURS)
    desired_start = serializers.DateTimeField(required=False, allow_null=True, default=None)
    renews = BoundedIntegerField(
        bounds=OBJECT_ID, required=False, allow_null=True, default=None, help_text="id of the grant renewed"
    )
    draft = serializers.BooleanField(default=False)
    requester = RequesterField(
        required=False,
        help_text="File for this person (username or e-mail, e.g. the ticket's reporter); "
        "needs the 'requests:on-behalf-of' token scope and a member of the workload's team.",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # The workload is looked up among the named person's, so resolve them first
        # (the field itself still reports any problem with the name).
        if isinstance(data, Mapping) and isinstance(data.get("requester"), str):
            try:
                self.context["on_behalf_of"] = self.fields["requester"].run_validation(data["requester"])
            except serializers.ValidationError:
                self.context.pop("on_behalf_of", None)
        return super().to_internal_value(data)

    def lifetime(self) -> timedelta:
        return timedelta(hours=self.validated_data["lifetime_hours"])


def flat_errors(errors: Any) -> dict[str, Any]:
    """Nested row errors as ``destinations[0].port``: the keys the service uses, one shape per API."""
    flat: dict[str, Any] = {}
    for key, value in errors.items():
        rows = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        nested = [(index, row) for index, row in rows if isinstance(row, dict)]
        if nested:
            for index, row in nested:
                for field, messages in row.items():
                    flat[f"{key}[{index}].{field}"] = messages
        else:
            flat[key] = value
    return flat


class ReasonInputSerializer(ClosedSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class RequestListQuery(serializers.Serializer[dict[str, Any]]):
    """Filters of GET /api/v1/requests/; a bad value is a 400 naming the parameter."""

    ticket_ref = serializers.CharField(required=False, max_length=100, help_text="Exact ticket reference.")
    status = serializers.ChoiceField(choices=RequestStatus.choices, required=False)
    team = serializers.SlugField(required=False, max_length=100, help_text="Team slug.")
    workload = BoundedIntegerField(bounds=OBJECT_ID, required=False, help_text="Workload id.")
    requester = serializers.CharField(required=False, max_length=254, help_text="Requester's username or e-mail.")
    environment = serializers.ChoiceField(choices=Environment.choices, required=False)
    updated_since = serializers.DateTimeField(
        required=False, help_text="Only requests changed at or after this instant (RFC 3339), for incremental sync."
    )
    decidable = serializers.BooleanField(
        required=False,
        help_text=(
            "true: only the pending requests the caller may approve now, exactly those whose allowed_actions "
            "contain approve (the approver's queue). Approving under a rule with MFA at the decision still needs "
            "a person in the portal; a token gets 403 mfa_step_up_required."
        ),
    )
    ordering = serializers.ChoiceField(
        choices=["-created_at", "updated_at"],
        required=False,
        help_text="Newest first (default), or oldest change first for incremental sync.",
    )
    cursor = serializers.CharField(required=False, help_text="The 'next' or 'previous' link's cursor.")
    limit = BoundedIntegerField(bounds=PAGE_LIMIT, required=False, help_text="Page size (at most 200).")


class CommentInputSerializer(ClosedSerializer):
    body = serializers.CharField(help_text="The comment (plain text).")


class CommentSerializer(serializers.ModelSerializer[RequestComment]):
    author = serializers.CharField(source="author.get_username")

    class Meta:
        model = RequestComment
        fields = ["id", "author", "body", "created_at"]


class RenewInputSerializer(ClosedSerializer):
    justification = serializers.CharField(help_text="Why the workload still needs the destination.")
    lifetime_hours = BoundedIntegerField(bounds=LIFETIME_HOURS)
    ticket_ref = serializers.CharField(required=False, allow_blank=True, default="")
    desired_start = serializers.DateTimeField(required=False, allow_null=True, default=None)


class DestinationSerializer(serializers.ModelSerializer[RequestDestination]):
    class Meta:
        model = RequestDestination
        fields = ["host", "port", "protocol", "tls_required"]


class WorkloadSerializer(serializers.ModelSerializer[Workload]):
    team = serializers.CharField(source="team.slug")

    class Meta:
        model = Workload
        fields = ["id", "name", "team", "identity", "identity_kind", "environment", "role", "sensitivity"]


class GrantListSerializer(serializers.ListSerializer[Grant]):
    """Reads the last observed traffic of a whole page of grants in one query."""

    def to_representation(self, data: Any) -> list[Any]:
        grants = list(data.all() if hasattr(data, "all") else data)
        self.child.context["last_seen"] = hooks.last_seen([g.pk for g in grants])  # type: ignore[union-attr]
        return super().to_representation(grants)


class GrantSerializer(serializers.ModelSerializer[Grant]):
    allowed_actions = serializers.SerializerMethodField()
    last_seen = serializers.SerializerMethodField(help_text="When a gateway last reported traffic through it.")

    class Meta:
        model = Grant
        fields = [
            "id",
            "identity",
            "host",
            "port",
            "protocol",
            "tls_required",
            "valid_from",
            "expires_at",
            "status",
            "request",
            "revoked_at",
            "revoke_reason",
            "revoke_kind",
            "do_not_renew",
            "allowed_actions",
            "last_seen",
        ]
        list_serializer_class = GrantListSerializer

    def get_last_seen(self, grant: Grant) -> datetime | None:
        page: dict[int, datetime] | None = self.context.get("last_seen")
        return (page if page is not None else hooks.last_seen([grant.pk])).get(grant.pk)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_allowed_actions(self, obj: Grant) -> list[str]:
        user = self.context.get("user")
        return grant_actions(user, obj).allowed if user is not None else []


class ExceptionRequestSerializer(serializers.ModelSerializer[ExceptionRequest]):
    workload = WorkloadSerializer()
    destinations = DestinationSerializer(many=True)
    grants = GrantSerializer(many=True)
    requester = serializers.CharField(source="requester.get_username")
    decided_by = serializers.CharField(source="decided_by.get_username", default=None)
    filed_by = serializers.CharField(
        source="filed_by.get_username", default=None, help_text="The integration's user, when filed on behalf."
    )
    lifetime_hours = serializers.SerializerMethodField()
    # Issue 8: the approval rule and what is missing, when it would go live, what the caller may do.
    approval = serializers.SerializerMethodField()
    go_live = serializers.SerializerMethodField()
    allowed_actions = serializers.SerializerMethodField()

    class Meta:
        model = ExceptionRequest
        fields = [
            "id",
            "status",
            "workload",
            "destinations",
            "purpose",
            "data_class",
            "justification",
            "ticket_ref",
            "lifetime_hours",
            "desired_start",
            "risk_tier",
            "risk_reasons",
            "requester",
            "filed_by",
            "decided_by",
            "decided_at",
            "decision_reason",
            "grants",
            "created_at",
            "updated_at",
            "revision",
            "approval",
            "go_live",
            "allowed_actions",
        ]

    def get_lifetime_hours(self, obj: ExceptionRequest) -> int:
        return int(obj.lifetime.total_seconds() // 3600)

    @extend_schema_field(serializers.JSONField())
    def get_approval(self, obj: ExceptionRequest) -> dict[str, object]:
        """Rule, why it applied, required, given and missing approvals (see approvals.access)."""
        return hooks.approvals.get().approval_summary(obj)

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_go_live(self, obj: ExceptionRequest) -> dict[str, object] | None:
        """When it would go live if approved now (open requests) or is scheduled to (approved ones)."""
        if obj.status == RequestStatus.APPROVED:
            starts = min((g.valid_from for g in obj.grants.all()), default=None)
            return {"at": starts.isoformat() if starts else None, "reason": "scheduled", "window": ""}
        if obj.status not in (RequestStatus.PENDING, RequestStatus.DRAFT, RequestStatus.CHANGES_REQUESTED):
            return None
        # One calendar for a whole page of requests.
        cache = self.context.setdefault("go_live_cache", {})
        return hooks.approvals.get().go_live(obj, now=timezone.now(), cache=cache).as_dict()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_allowed_actions(self, obj: ExceptionRequest) -> list[str]:
        user = self.context.get("user")
        return hooks.approvals.get().request_actions(user, obj).allowed if user is not None else []
