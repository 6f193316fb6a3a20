"""``manage.py prune_transitions [--days N]``: delete old transition history.

The node workers prune every hour already (cluster/carp/bridge.py); this is for
a cron job on a cluster whose workers are stopped, or to prune at once.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cluster.services import prune_transitions


class Command(BaseCommand):
    help = "Delete transitions older than CLUSTER_TRANSITION_RETENTION_DAYS (or --days)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=settings.CLUSTER_TRANSITION_RETENTION_DAYS,
            help="keep this many days (default: CLUSTER_TRANSITION_RETENTION_DAYS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days < 1:
            raise CommandError("--days must be at least 1")
        deleted = prune_transitions(days)
        self.stdout.write(f"deleted {deleted} transition(s) older than {days} day(s)")
