"""The node's desired state as the engine runs it: its version and its local copy.

DESIGN rule 1 (level-triggered): `read_database` turns what `services.desired_node`
hands over (a typed structure) into a `NodeConfig` with a version that digests
everything the node runs; the engine applies a configuration only when that
version differs from the applied one. The last applied configuration is kept
on local disk (`LocalConfigStore`), encrypted, so that a worker started while the
database is down serves from it.

A virtual host is turned into plain data in one place only,
`cluster.carp.config.vhost_to_data` / `vhost_from_data` (the daemon's
``[[vhost]]`` table): the digest and the local file both use it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster import services
from cluster.carp.config import vhost_from_data, vhost_to_data
from cluster.carp.types import ConfigError, VirtualHostConfig
from cluster.checks import CheckSpec
from cluster.statekeys import ConfigProblem

log = logging.getLogger("cluster.node")

# 2: vhosts as cluster.carp.config plain data, problems kept too; 3: and the health
# checks with the node's address (their default target). Format 2 is still read.
LOCAL_FORMAT = 3
READABLE_FORMATS = (2, 3)


@dataclass(frozen=True)
class NodeConfig:
    """Everything one node runs, with the version that names it, and the aliases it
    had to leave out (each with its cause, for the console)."""

    node: str
    vhosts: tuple[VirtualHostConfig, ...]
    maintenance: bool
    version: str
    problems: tuple[ConfigProblem, ...] = ()
    # The virtual hosts that other nodes run (services.DesiredNode.elsewhere).
    elsewhere: frozenset[tuple[str, int]] = frozenset()
    # The health checks it runs (cluster/checks.py), and its own address: the target
    # of a check whose host is empty.
    checks: tuple[CheckSpec, ...] = ()
    address: str = ""

    @property
    def interfaces(self) -> frozenset[str]:
        return frozenset(v.interface for v in self.vhosts)


def config_version(desired: services.DesiredNode) -> str:
    """The version that names ``desired`` (``services.config_version``: the web side
    computes the same digest to tell a node that did not apply its configuration)."""
    return services.config_version(desired)


def _plain(vhost: services.DesiredVirtualHost, address: str) -> dict[str, Any]:
    """One desired virtual host as a ``[[vhost]]`` table (cluster.carp.config): its
    public data (``services.public_vhost_data``, what the version digests) and its
    password."""
    return {**services.public_vhost_data(vhost, address), "password": vhost.password}


def node_config(desired: services.DesiredNode) -> NodeConfig:
    """The engine's configuration for ``desired``: a virtual host per alias, and a
    problem per alias left out (by the database, or because it cannot be built)."""
    if desired.address is None:
        log.warning("node %s is not in the database: running no virtual host", desired.node)
    problems = [ConfigProblem(a.vhid, a.interface, a.cause) for a in desired.left_out]
    for item in desired.left_out:
        log.error("vhid %s on %s left out: %s", item.vhid, item.interface, item.cause)
    vhosts = []
    for vhost in desired.vhosts:
        where = f"vhid {vhost.vhid} on {vhost.interface}"
        try:
            vhosts.append(vhost_from_data(_plain(vhost, desired.address or ""), where))
        except (ConfigError, ValueError) as exc:
            log.error("%s left out: %s", where, exc)
            problems.append(ConfigProblem(vhost.vhid, vhost.interface, str(exc)))
    return NodeConfig(
        desired.node,
        tuple(vhosts),
        desired.maintenance,
        config_version(desired),
        tuple(problems),
        desired.elsewhere,
        tuple(desired.checks),
        desired.address or "",
    )


def read_database(node: str) -> NodeConfig:
    """The node's desired configuration from the database (raises when it cannot be read).

    A node that is not in the database runs nothing: it was deleted, and a deleted
    node must release its VIPs.
    """
    from django.db import close_old_connections

    close_old_connections()
    try:
        return node_config(services.desired_node(node))
    finally:
        close_old_connections()


class LocalConfigStore:
    """The last applied configuration on local disk: ``VAR_DIR/carp/<node>.json``.

    It holds the CARP passwords, so the JSON carries a Fernet token (the key of
    `cluster.crypto`, which encrypts them in the database too), the file is mode
    0600, and it is replaced atomically (temporary file, fsync, rename) so that a
    crash mid-write leaves the previous copy.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_node(cls, var_dir: Path, node: str) -> LocalConfigStore:
        return cls(Path(var_dir) / "carp" / f"{node}.json")

    def save(self, config: NodeConfig) -> None:
        from cluster import crypto

        plain = json.dumps(
            {
                "node": config.node,
                "version": config.version,
                "maintenance": config.maintenance,
                "vhosts": [vhost_to_data(v) for v in config.vhosts],
                "problems": [
                    {"vhid": p.vhid, "interface": p.interface, "cause": p.cause}
                    for p in config.problems
                ],
                "checks": [c.to_data() for c in config.checks],
                "address": config.address,
            }
        )
        body = json.dumps({"format": LOCAL_FORMAT, "token": crypto.encrypt(plain)})
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def load(self) -> NodeConfig | None:
        """The saved configuration, or None when there is none or it cannot be read."""
        from cluster import crypto

        try:
            body = json.loads(self.path.read_text())
            if body.get("format") not in READABLE_FORMATS:
                raise ValueError(f"unknown format {body.get('format')!r}")
            data = json.loads(crypto.decrypt(body["token"]))
            return NodeConfig(
                node=data["node"],
                vhosts=tuple(
                    vhost_from_data(v, f"{self.path} vhost #{n}")
                    for n, v in enumerate(data["vhosts"], 1)
                ),
                maintenance=bool(data["maintenance"]),
                version=data["version"],
                problems=tuple(ConfigProblem.parse(p) for p in data.get("problems", [])),
                # Format 2 had neither: a node restarted from it runs no check until
                # the database answers.
                checks=tuple(CheckSpec.from_data(c) for c in data.get("checks", [])),
                address=str(data.get("address", "")),
            )
        except FileNotFoundError:
            return None
        except Exception as exc:
            log.error("the local configuration %s cannot be read: %s", self.path, exc)
            return None


__all__ = [
    "LocalConfigStore",
    "NodeConfig",
    "config_version",
    "node_config",
    "read_database",
]
