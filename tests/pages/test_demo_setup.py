"""`manage.py demo_setup`, which `make demo` runs before serving the console."""

from __future__ import annotations

from io import StringIO

from django.contrib.auth import authenticate
from django.core.management import call_command

from cluster import access
from cluster.models import AuditEntry, IPAlias, Node


def run(var_dir) -> str:
    out = StringIO()
    call_command("demo_setup", var_dir=str(var_dir), stdout=out)
    return out.getvalue()


def test_it_creates_two_users_and_an_active_active_cluster(db, tmp_path):
    output = run(tmp_path)
    admin_password = (tmp_path / "admin-password").read_text().strip()
    support_password = (tmp_path / "support-password").read_text().strip()
    assert "http://127.0.0.1:8000/" in output
    assert f"admin / {admin_password}" in output
    assert f"support / {support_password}" in output
    assert (tmp_path / "admin-password").stat().st_mode & 0o077 == 0
    admin = authenticate(username="admin", password=admin_password)
    support = authenticate(username="support", password=support_password)
    assert access.can_change(admin)
    assert access.role_name(support) == "Support"
    assert not access.can_change(support)
    assert [(n.name, n.address, n.interface) for n in Node.objects.all()] == [
        ("node1", "192.0.2.11", "eth0"),
        ("node2", "192.0.2.12", "eth0"),
        ("node3", "192.0.2.13", "eth0"),
    ]
    primaries = {
        alias.vhid: [p.node.name for p in alias.priorities.all() if p.priority == "primary"]
        for alias in IPAlias.objects.all()
    }
    assert primaries == {1: ["node1"], 2: ["node2"]}
    # Written through the services: audited as the administrator.
    assert set(AuditEntry.objects.values_list("actor_name", flat=True)) == {"admin"}


def test_a_second_run_reuses_the_passwords_and_leaves_the_cluster_alone(db, tmp_path):
    run(tmp_path)
    first = (tmp_path / "admin-password").read_text()
    IPAlias.objects.filter(vhid=2).delete()
    output = run(tmp_path)
    assert (tmp_path / "admin-password").read_text() == first
    assert f"admin / {first.strip()}" in output
    assert "left as it was" in output
    assert IPAlias.objects.count() == 1
    assert Node.objects.count() == 3
