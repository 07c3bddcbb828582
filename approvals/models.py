"""Approver groups: who may decide requests of which teams."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from exceptions.models import Team


class ApproverGroup(models.Model):
    name = models.CharField(max_length=100, unique=True)
    teams = models.ManyToManyField(Team, related_name="approver_groups", help_text="Teams whose requests it decides.")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="approver_groups", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
