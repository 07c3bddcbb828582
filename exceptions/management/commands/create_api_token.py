from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import SystemActor
from exceptions.tokens import SCOPES, create_token


class Command(BaseCommand):
    help = "Create a scoped integration token for a ticketing tool; prints the key once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="the account the tool acts as (its permissions apply)")
        parser.add_argument("--name", required=True, help="the tool, for example jira")
        parser.add_argument("--scope", action="append", required=True, choices=sorted(SCOPES), dest="scopes")
        parser.add_argument("--days", type=int, default=90, help="lifetime in days (0: no expiry); default 90")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}; create the account first.")
        try:
            token, key = create_token(
                actor=SystemActor("manage.py create_api_token"),
                user=user,
                name=options["name"],
                scopes=options["scopes"],
                lifetime=timedelta(days=options["days"]) if options["days"] else None,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        expiry = token.expires_at.date().isoformat() if token.expires_at else "never"
        self.stdout.write(
            f"Token {token.name} for {user.get_username()} ({', '.join(token.scopes)}), expires {expiry}."
        )
        self.stdout.write("Key (shown once; send it as 'Authorization: Bearer <key>'):")
        self.stdout.write(key)
