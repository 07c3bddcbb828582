from django.contrib import admin

from audit.models import AuditCheckpoint, AuditEvent
from foundation.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "actor_label", "action", "object_type", "object_id"]
    list_filter = ["action", "actor_kind"]


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    """Checkpoints are written by ``write_checkpoint`` only."""

    list_display = ["seq", "created_at", "head_hash", "commit", "path"]
