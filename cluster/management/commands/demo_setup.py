"""Prepare the demo: two users, and a small cluster when the database is empty.

Idempotent. The administrator's and the support user's passwords are
generated once, kept under ``var/`` (mode 0600) and reused on the next run, so
the credentials printed last time keep working. Nodes and aliases are only
created when there are none yet, and always through ``cluster.services``.
"""

from __future__ import annotations

import secrets
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
from cluster.models import IPAlias, Node

ADMIN_USERNAME = "admin"
SUPPORT_USERNAME = "support"
DEMO_NODES: list[services.NodeData] = [
    {"name": f"node{n}", "address": f"192.0.2.{10 + n}", "interface": "eth0", "ordinal": n}
    for n in (1, 2, 3)
]


@dataclass(frozen=True)
class DemoAlias:
    vhid: int
    address: str
    primary: str
    secondary: str

    def service_data(self) -> services.AliasData:
        tiers = {self.primary: Priority.PRIMARY, self.secondary: Priority.SECONDARY}
        return {
            "vhid": self.vhid,
            "interface": "eth0",
            "password": secrets.token_urlsafe(12),
            "addresses": [self.address],
            "priorities": [
                {"node": node["name"], "priority": tiers.get(node["name"], Priority.BACKUP)}
                for node in DEMO_NODES
            ],
            "description": f"Mail VIP ({self.primary} active)",
        }


# Active/active, as the appliance documents it: each VIP has another Primary,
# and the other node is its Secondary; node3 backs both up.
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
        created = create_demo_cluster(admin)
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  Console:        {options['url']}",
                    f"  Administrator:  {ADMIN_USERNAME} / {admin_password}",
                    f"  Support:        {SUPPORT_USERNAME} / {support_password}",
                    f"  (passwords kept in {var_dir}/)",
                    "  Demo cluster:   "
                    + ("created 3 nodes and 2 aliases" if created else "left as it was"),
                    "",
                ]
            )
        )


def stored_secret(path: Path) -> str:
    """The secret kept in ``path``, generated on first use."""
    if path.exists():
        text = path.read_text().strip()
        if text:
            return text
    secret = secrets.token_urlsafe(12)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


def ensure_user(username: str, password: str) -> AbstractBaseUser:
    """The user ``username``, created if missing, with ``password`` (re)set."""
    user, _created = get_user_model().objects.get_or_create(username=username)
    if not user.check_password(password):
        user.set_password(password)
        user.save()
    return user


def create_demo_cluster(actor: AbstractBaseUser) -> bool:
    """Three nodes and two active/active aliases, if there are neither yet."""
    if Node.objects.exists() or IPAlias.objects.exists():
        return False
    with transaction.atomic():
        for node in DEMO_NODES:
            services.create_node(actor, node)
        for alias in DEMO_ALIASES:
            services.create_alias(actor, alias.service_data())
    return True
