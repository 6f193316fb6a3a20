"""``manage.py prune_events [--dry-run]``: delete cluster events and notification
deliveries past their retention (cluster/retention.py).

The notifier prunes every hour already; this is for a cron job on a cluster whose
notifier is stopped, to prune at once, or (``--dry-run``) to see what would go.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from cluster import retention


class Command(BaseCommand):
    help = (
        "Delete events older than EVENT_RETENTION_DAYS and done deliveries older than"
        " DELIVERY_RETENTION_DAYS (undelivered ones, and each subject's newest event, stay)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = bool(options["dry_run"])
        pruned = retention.prune(timezone.now(), dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"{verb} {pruned} (events older than {settings.EVENT_RETENTION_DAYS} day(s),"
            f" deliveries older than {settings.DELIVERY_RETENTION_DAYS} day(s))"
        )
