"""A stand-in for the engines in tests of the live status: it writes the
keys and messages of ``cluster.statekeys`` into the private test Redis,
as ``cluster/carp/bridge.py`` does on a real node."""

from __future__ import annotations

import json
import time
from typing import Any

from cluster import statekeys


class FakeEngines:
    def __init__(self, url: str) -> None:
        self.client: Any = statekeys.sync_client(url)

    def close(self) -> None:
        self.client.close()

    def report(
        self,
        node: str,
        states: dict[int, str],
        interface: str = "eth0",
        heartbeat: bool = True,
    ) -> None:
        """``node`` runs the VHIDs of ``states`` (vhid -> MASTER/BACKUP/INIT);
        without ``heartbeat`` its heartbeat key is gone (it stopped reporting)."""
        now = time.time()
        if heartbeat:
            self.beat(node)
        else:
            self.client.delete(statekeys.heartbeat_key(node))
        self.client.delete(statekeys.node_vhosts_key(node))
        for vhid, state in states.items():
            self.client.sadd(
                statekeys.node_vhosts_key(node), statekeys.vhost_member(interface, vhid)
            )
            values = {"node": node, "interface": interface, "vhid": vhid, "state": state}
            values.update({"advskew": 0, "last_reason": "startup", "last_at": now})
            values["updated_at"] = now
            self.client.hset(statekeys.vhost_key(node, interface, vhid), mapping=values)

    def beat(self, node: str, config_source: str = "database") -> None:
        """One heartbeat of ``node``, as its engine sends every second."""
        now = time.time()
        beat = {"node": node, "pid": 1, "at": now, "started_at": now - 60}
        beat.update({"config_version": "3f9a0c1d2e4b5a69", "config_source": config_source})
        key = statekeys.heartbeat_key(node)
        self.client.set(key, json.dumps(beat), ex=statekeys.HEARTBEAT_TTL)

    def publish(self, kind: str, **fields: Any) -> int:
        receivers: int = self.client.publish(
            statekeys.EVENTS_CHANNEL, statekeys.encode_message(kind, **fields)
        )
        return receivers
