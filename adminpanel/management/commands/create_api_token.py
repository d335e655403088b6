"""Make a JSON API token for a user (shown once), or revoke one by its prefix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from adminpanel.api import tokens as api_auth


class Command(BaseCommand):
    help = (
        "Print a new JSON API token for USER (only its SHA-256 is stored: copy it now), "
        "or revoke a token with --revoke PREFIX."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", nargs="?", help="the token's user (username)")
        parser.add_argument("--name", default="", help="what the token is for, to tell it apart")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            metavar="N",
            help="the token stops working N days from now (default: until revoked)",
        )
        parser.add_argument(
            "--revoke",
            metavar="PREFIX",
            help="revoke the live token starting with PREFIX (as printed when it was made)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = self._user(options["user"]) if options["user"] else None
        if options["revoke"]:
            try:
                row = api_auth.revoke(options["revoke"], user)
            except api_auth.TokenError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"Revoked {row.prefix}… of {row.user.username}.")
            return
        if user is None:
            raise CommandError("name the token's user: create_api_token USER [--name NAME]")
        if not user.is_active:
            raise CommandError(f"user {user.username!r} is inactive: its token would not work")
        if len(options["name"]) > 64:
            raise CommandError("--name is at most 64 characters")
        days = options["expires_in_days"]
        if days is not None and not 1 <= days <= 3650:
            raise CommandError("--expires-in-days is a whole number of days from 1 to 3650")
        expires_in = timedelta(days=days) if days is not None else None
        row, token = api_auth.create_token(user, options["name"], expires_in)
        until = f", valid until {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ""
        self.stderr.write(
            f"API token {row.prefix}… for {user.username}{until}; shown only now, "
            "send it as 'Authorization: Bearer <token>':"
        )
        self.stdout.write(token)

    def _user(self, username: str) -> User:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        return user
