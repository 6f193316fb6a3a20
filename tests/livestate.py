"""A stand-in for the engines in tests of the live status: it writes the
keys and messages of ``cluster.statekeys`` into the private test Redis,
as ``cluster/node/state.py`` does on a real node. It writes raw values, so a
test can also write what no engine would (malformed live state)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from cluster import statekeys
from cluster.carp.types import DemotionSource
from cluster.checks import CheckStatus


def chunk_text(chunk: str | bytes) -> str:
    """A chunk of the status stream as text (an update's chunk is bytes, encoded
    once by the hub for every stream; the others are text)."""
    return chunk.decode() if isinstance(chunk, bytes) else chunk


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

    def beat(
        self,
        node: str,
        config_source: str = "database",
        demotion: Sequence[DemotionSource] = (),
        problems: Sequence[statekeys.ConfigProblem] = (),
        checks: Sequence[CheckStatus] = (),
        client: str = "",
        at: float | None = None,
        ttl: float = statekeys.HEARTBEAT_TTL,
    ) -> None:
        """One heartbeat of ``node``, as its engine sends every second; ``client``:
        the name of the Redis connection it says it holds open (``at``: as if sent
        then; ``ttl``: seconds its key lives from now)."""
        now = time.time() if at is None else at
        beat = statekeys.Heartbeat(
            node=node,
            at=now,
            pid=1,
            config_version="3f9a0c1d2e4b5a69",
            config_source=config_source,
            demotion=tuple(demotion),
            problems=tuple(problems),
            checks=tuple(checks),
            client=client,
        )
        key = statekeys.heartbeat_key(node)
        self.client.set(key, beat.encode(), px=int(ttl * 1000))

    def beat_raw(self, node: str, raw: str) -> None:
        """A heartbeat key holding ``raw`` as it is: what no engine would write."""
        self.client.set(statekeys.heartbeat_key(node), raw, ex=statekeys.HEARTBEAT_TTL)

    def overwrite(self, node: str, vhid: int, interface: str = "eth0", **fields: str) -> None:
        """Replace fields of ``node``'s hash of ``vhid`` with raw values (after
        ``report``), as a broken or foreign writer might leave them."""
        self.client.hset(statekeys.vhost_key(node, interface, vhid), mapping=fields)

    def publish(self, kind: str, **fields: Any) -> int:
        raw = json.dumps({"kind": kind, **fields})
        receivers: int = self.client.publish(statekeys.EVENTS_CHANNEL, raw)
        return receivers
