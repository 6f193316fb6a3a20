"""The contract between the engines (writers) and the web (reader) in Redis.

The engine of each node publishes its live state here (cluster/carp/bridge.py);
the status page, the IP ALIAS page, ``GET /api/v1/status/`` and the event
stream read it (cluster/live.py). Nothing else may invent a key or a message:
both sides import the names from this module. No Django here, so the engine's
bridge, the demo lab and the benchmarks can use it as they are.

Keys (every value is a string; times are wall-clock epoch seconds as floats):

``carp:hb:<node>`` (string, JSON, TTL ``HEARTBEAT_TTL``)
    The node's heartbeat, refreshed every ``HEARTBEAT_INTERVAL``:
    ``{"node", "pid", "at", "started_at", "config_version", "config_source",
    "demotion", "drops": {reason: n}, "port_errors": {op: n}}``.
    ``config_source`` is ``"database"`` or ``"local"`` (started from the copy on
    disk). Its absence means "node not reporting".

``carp:vhs:<node>`` (set)
    The ``"<interface>:<vhid>"`` members the node runs now.

``carp:vh:<node>:<interface>:<vhid>`` (hash)
    One virtual host on one node: ``node, interface, vhid, state`` (INIT, BACKUP,
    MASTER), ``advbase, advskew, demote`` (what it advertises), ``master`` (the
    address the current master's adverts come from; this node's own source
    address when it is MASTER; "" when unknown), ``addresses`` (comma-separated
    VIPs with prefix), ``last_from, last_to, last_reason, last_at`` (the last
    transition), ``adverts_sent, adverts_received, updated_at``.

Pub/sub channel ``carp:events``: one JSON object per message, with ``"kind"``:

- ``"vhost"``: the whole hash above after it changed (state, master, counters),
  plus ``"at"``: when the engine saw the change.
- ``"transition"``: ``node, interface, vhid, from, to, reason, at`` (``at`` is
  the engine's wall-clock time of the transition itself: the latency benchmark
  measures from it).
- ``"heartbeat"``: ``node, at`` (at most one per ``HEARTBEAT_INTERVAL``).
- ``"node"``: ``node, status`` (``"started"`` or ``"stopped"``), ``at``.

Channel ``carp:demo:control`` (demo mode only): ``{"action": "fail" | "restore",
"node": name, "at"}``, from the status page's buttons or ``make demo-fail`` to
the demo supervisor (cluster/lab/).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

PREFIX = "carp"
EVENTS_CHANNEL = f"{PREFIX}:events"
DEMO_CONTROL_CHANNEL = f"{PREFIX}:demo:control"

HEARTBEAT_INTERVAL = 1.0  # seconds between two heartbeats of a node
HEARTBEAT_TTL = 4  # seconds: three missed heartbeats and the node is "not reporting"

VHOST_FIELDS = (
    "node",
    "interface",
    "vhid",
    "state",
    "advbase",
    "advskew",
    "demote",
    "master",
    "addresses",
    "last_from",
    "last_to",
    "last_reason",
    "last_at",
    "adverts_sent",
    "adverts_received",
    "updated_at",
)


def heartbeat_key(node: str) -> str:
    return f"{PREFIX}:hb:{node}"


def node_vhosts_key(node: str) -> str:
    return f"{PREFIX}:vhs:{node}"


def vhost_member(interface: str, vhid: int) -> str:
    return f"{interface}:{vhid}"


def parse_vhost_member(member: str) -> tuple[str, int]:
    interface, _, vhid = member.rpartition(":")
    return interface, int(vhid)


def vhost_key(node: str, interface: str, vhid: int) -> str:
    return f"{PREFIX}:vh:{node}:{interface}:{vhid}"


def encode_message(kind: str, **fields: Any) -> str:
    return json.dumps({"kind": kind, **fields}, separators=(",", ":"), sort_keys=True)


def decode_message(raw: str | bytes) -> dict[str, Any]:
    """The message as a dict; raises ``ValueError`` when it is not one of ours."""
    data = json.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise ValueError("not a carp:events message")
    return data


UNIX_SCHEMES = ("redis+socket", "unix")


def is_unix_socket(url: str) -> bool:
    return urlsplit(url).scheme in UNIX_SCHEMES


def redis_py_url(url: str) -> str:
    """The appliance's ``REDIS_URL`` in a form redis-py's ``from_url`` reads.

    ``REDIS_URL`` is also Celery's broker URL, so it may use kombu's
    ``redis+socket:///path/redis.sock`` form (NOTES.md: inside a node's network
    namespace Redis is reached through a Unix socket); redis-py spells the same
    thing ``unix:///path/redis.sock``.
    """
    scheme, sep, rest = url.partition("://")
    return f"unix{sep}{rest}" if scheme == "redis+socket" else url


def sync_client(url: str, timeout: float = 1.0, retries: int = 0) -> Any:
    """A redis-py client with short timeouts: callers must never hang on Redis.

    ``retries``: how often redis-py retries a failed command. Its own default
    (three times with exponential backoff) held a page up for about 4 s and the
    engine's drainer for seconds when Redis was down; every caller here retries
    at its own pace anyway (the next heartbeat tick, the next page view), so the
    default is none.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        redis_py_url(url),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), retries),
    )


def async_client(url: str, timeout: float = 1.0, retries: int = 0) -> Any:
    """The asyncio twin of :func:`sync_client` (for the event stream; no read
    timeout, since a pub/sub listener waits for messages)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.Redis.from_url(
        redis_py_url(url),
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), retries),
    )


def request_demo_action(url: str, action: str, node: str, timeout: float = 1.0) -> int:
    """Publish a "fail" or "restore" request for ``node`` on ``DEMO_CONTROL_CHANNEL``
    (the status page's buttons and ``make demo-fail`` alike); returns how many
    supervisors heard it (0: no demo is running). Redis errors propagate."""
    import time

    client = sync_client(url, timeout=timeout)
    try:
        request = {"action": action, "node": node, "at": time.time()}
        return int(client.publish(DEMO_CONTROL_CHANNEL, json.dumps(request)))
    finally:
        client.close()
