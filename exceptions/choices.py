from django.db import models


class Environment(models.TextChoices):
    PROD = "prod", "Production"
    STAGING = "staging", "Staging"
    DEV = "dev", "Development"


class IdentityKind(models.TextChoices):
    SPIFFE = "spiffe", "SPIFFE ID"
    KUBERNETES = "kubernetes", "Kubernetes service account"
    AWS_ROLE = "aws_role", "AWS IAM role"
    GCP_SA = "gcp_sa", "GCP service account"


class WorkloadRole(models.TextChoices):
    SERVICE = "service", "Service"
    BUILD = "build", "Build"
    BATCH = "batch", "Batch"


class Sensitivity(models.TextChoices):
    LOW = "low", "Low"
    MODERATE = "moderate", "Moderate"
    HIGH = "high", "High"


class Protocol(models.TextChoices):
    TCP = "tcp", "TCP"
    UDP = "udp", "UDP"


class Purpose(models.TextChoices):
    DEPENDENCY_FETCH = "dependency_fetch", "Dependency fetch"
    PARTNER_API = "partner_api", "Partner API"
    TELEMETRY = "telemetry", "Telemetry"
    DIAGNOSTICS = "diagnostics", "Diagnostics"
    OTHER = "other", "Other"


class DataClass(models.TextChoices):
    PUBLIC = "public", "Public"
    INTERNAL = "internal", "Internal"
    CONFIDENTIAL = "confidential", "Confidential"
    RESTRICTED = "restricted", "Restricted"


class RequestStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING = "pending", "Pending approval"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    APPROVED = "approved", "Approved (scheduled)"
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class GrantStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class RevokeKind(models.TextChoices):
    """Why a grant was revoked: sent as ``reason_kind`` with the ``grant.revoked`` webhook."""

    MANUAL = "manual", "Revoked by a person"
    STALE = "stale", "Unused (stale sweep)"
    BREAKGLASS_CLOSED = "breakglass_closed", "Break-glass closed early"
    SUPERSEDED = "superseded", "Superseded by a renewal"
    OFFBOARDED = "offboarded", "Workload offboarded"


class RiskTier(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
