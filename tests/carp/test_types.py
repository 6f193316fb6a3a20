"""The engine's value types."""

from __future__ import annotations

import ipaddress

from cluster.carp.types import VirtualHostConfig


def test_a_virtual_host_config_never_shows_its_password() -> None:
    config = VirtualHostConfig(
        vhid=1,
        interface="eth0",
        password=b"s3cret-value",
        addresses=(ipaddress.ip_interface("192.0.2.100/32"),),
    )
    assert "s3cret-value" not in repr(config)
    assert "s3cret-value" not in str(config)
