"""``manage.py notifier``: the process that detects cluster events and sends them.

Run it beside the web (the demo's supervisor starts it with the console); more
than one may run, each event is still stored once and sent once per channel
(cluster/notifier.py). SIGTERM or SIGINT stops it after the delivery in hand.
"""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cluster.notifier import Notifier


class Command(BaseCommand):
    help = "Detect cluster events and deliver notifications (runs until SIGTERM)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default=None, help="this notifier's name in claims and logs")

    def handle(self, *args: Any, **options: Any) -> None:
        notifier = Notifier(name=options["name"])

        def stop(signum: int, frame: Any) -> None:
            notifier.shutdown()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"notifier {notifier.name} running", ending="\n")
        self.stdout.flush()
        notifier.run()
