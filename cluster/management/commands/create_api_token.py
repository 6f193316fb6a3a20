"""Print a new API token for a user (in place of DRF's ``drf_create_token``).

The key is printed once: only its digest is stored. The token is audited with
the actor "system", as every change made from the command line is.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cluster import services


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (shown this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user the token authenticates as.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"There is no user {options['username']!r}.")
        if not user.is_active:
            raise CommandError(f"User {options['username']!r} is disabled.")
        self.stdout.write(services.grant_token(None, user))
