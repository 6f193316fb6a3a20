"""Prepare the demo: two users, a small cluster when the database is empty, and
an smtp health check on every node when there is no check yet.

Idempotent. The administrator's and the support user's passwords are
generated once, kept under ``var/`` (mode 0600) and reused on the next run, so
the credentials printed last time keep working. Nodes and aliases are only
created when there are none yet, and always through ``cluster.services``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from cluster import access, services
from cluster.choices import Priority
from cluster.lab.lab import DEMO_CHECK, MAX_NODES, stored_secret
from cluster.models import HealthCheck, IPAlias, Node

ADMIN_USERNAME = "admin"
SUPPORT_USERNAME = "support"


def demo_nodes(count: int) -> list[services.NodeData]:
    """node1..node<count> at 192.0.2.11.. on eth0: the addresses of cluster.lab's namespaces."""
    return [
        {"name": f"node{n}", "address": f"192.0.2.{10 + n}", "interface": "eth0", "ordinal": n}
        for n in range(1, count + 1)
    ]


@dataclass(frozen=True)
class DemoAlias:
    vhid: int
    address: str
    primary: str
    secondary: str

    def service_data(self, nodes: Sequence[services.NodeData]) -> services.AliasData:
        names = [node["name"] for node in nodes]
        # With one node there is no node2: node1 is Primary of both aliases.
        primary = self.primary if self.primary in names else names[0]
        tiers = {self.secondary: Priority.SECONDARY, primary: Priority.PRIMARY}
        return {
            "vhid": self.vhid,
            "interface": "eth0",
            "password": secrets.token_urlsafe(12),
            "addresses": [self.address],
            "priorities": [
                {"node": name, "priority": tiers.get(name, Priority.BACKUP)} for name in names
            ],
            "description": f"Mail VIP ({primary} active)",
        }


# Active/active, as the appliance documents it: each VIP has another Primary,
# and the other node is its Secondary; every further node backs both up.
DEMO_ALIASES = [
    DemoAlias(vhid=1, address="192.0.2.101/24", primary="node1", secondary="node2"),
    DemoAlias(vhid=2, address="192.0.2.102/24", primary="node2", secondary="node1"),
]


class Command(BaseCommand):
    help = "Create the demo users (and demo nodes and aliases if the database is empty)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--var-dir",
            default=str(Path(settings.BASE_DIR) / "var"),
            help="Where the generated passwords are kept (default: var/).",
        )
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="URL to print.")
        parser.add_argument(
            "--nodes",
            type=int,
            choices=range(1, MAX_NODES + 1),
            default=3,
            metavar=f"1..{MAX_NODES}",
            help="How many demo nodes to create in an empty database (default: 3).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        var_dir = Path(options["var_dir"])
        var_dir.mkdir(parents=True, exist_ok=True)
        admin_password = stored_secret(var_dir / "admin-password")
        support_password = stored_secret(var_dir / "support-password")
        with transaction.atomic():
            admin = ensure_user(ADMIN_USERNAME, admin_password)
            access.make_administrator(admin)
            support = ensure_user(SUPPORT_USERNAME, support_password)
            access.make_support(support)
        nodes = demo_nodes(options["nodes"])
        created = create_demo_cluster(admin, nodes)
        if created:
            summary = f"created {len(nodes)} node(s) and {len(DEMO_ALIASES)} aliases"
        else:
            existing = ", ".join(Node.objects.order_by("ordinal").values_list("name", flat=True))
            summary = f"left as it was (nodes: {existing or 'none'})"
        if create_demo_check(admin):
            summary += f"; health check {DEMO_CHECK['name']} (smtp, port 25) on every node"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  Console:        {options['url']}",
                    f"  Administrator:  {ADMIN_USERNAME} / {admin_password}",
                    f"  Support:        {SUPPORT_USERNAME} / {support_password}",
                    f"  (passwords kept in {var_dir}/)",
                    f"  Demo cluster:   {summary}",
                    "",
                ]
            )
        )


def ensure_user(username: str, password: str) -> AbstractBaseUser:
    """The user ``username``, created if missing, with ``password`` (re)set."""
    user, _created = get_user_model().objects.get_or_create(username=username)
    if not user.check_password(password):
        user.set_password(password)
        user.save()
    return user


def create_demo_check(actor: AbstractBaseUser) -> bool:
    """The demo's smtp check, when there is no health check at all yet (a database
    from an older demo gets it too; one whose checks were all deleted gets it back)."""
    if HealthCheck.objects.exists():
        return False
    services.create_check(actor, DEMO_CHECK)
    return True


def create_demo_cluster(actor: AbstractBaseUser, nodes: Sequence[services.NodeData]) -> bool:
    """The nodes and two active/active aliases, if there are neither yet."""
    if Node.objects.exists() or IPAlias.objects.exists():
        return False
    with transaction.atomic():
        for node in nodes:
            services.create_node(actor, node)
        for alias in DEMO_ALIASES:
            services.create_alias(actor, alias.service_data(nodes))
    return True
