"""The Redis contract (cluster.statekeys): REDIS_URL in kombu's form reaches redis-py
as the same socket, and every key and message reads back as it was written, while a
value that does not parse raises `Unreadable` naming its field."""

from __future__ import annotations

import json

import pytest

from cluster import statekeys
from cluster.carp.types import DemotionSource, State
from cluster.checks import CheckStatus


def test_kombus_socket_url_becomes_redis_pys_and_tcp_urls_stay() -> None:
    assert statekeys.redis_py_url("redis+socket:///run/x/redis.sock") == "unix:///run/x/redis.sock"
    assert statekeys.redis_py_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert statekeys.is_unix_socket("redis+socket:///run/x/redis.sock")
    assert not statekeys.is_unix_socket("rediss://cache.example:6380/0")


def test_a_client_on_a_socket_url_talks_to_that_socket(redis_url: str) -> None:
    client = statekeys.sync_client(redis_url)
    try:
        assert client.ping()
        assert client.connection_pool.connection_kwargs["path"] == redis_url.split("://", 1)[1]
    finally:
        client.close()


# ---- parsing: strict about what is there, lenient about what is missing ----------------
BEAT = statekeys.Heartbeat(
    node="node1",
    at=1_767_000_000.25,
    pid=4242,
    config_version="3f9a0c1d2e4b5a69",
    config_source="local",
    demotion=(
        DemotionSource("link:eth0", 240, "link eth0 down"),
        DemotionSource("maintenance", 240, "maintenance"),
    ),
    problems=(statekeys.ConfigProblem(42, "eth0", "its password cannot be decrypted"),),
    checks=(
        CheckStatus(
            "smtp-25", "smtp", False, 3, "connection refused", 1_767_000_000.0, 1_766_999_996.0, 240
        ),
        CheckStatus("disk", "disk", True, 12, "40% free on /var", 1_767_000_000.0),
        CheckStatus("web", "http", None, 0, "", None, None, 240, gating=True),
    ),
    drops={"bad_hmac": 3},
    port_errors={"AddAddresses:eth0": 1},
)

VHOST = statekeys.VhostState(
    node="node1",
    interface="eth0",
    vhid=42,
    state=State.BACKUP,
    advbase=1,
    advskew=240,
    demote=240,
    master="192.0.2.12",
    addresses=("192.0.2.42/24", "2001:db8::42/64"),
    last_from=State.MASTER,
    last_to=State.BACKUP,
    last_reason="maintenance",
    last_source="maintenance",
    last_at=1_767_000_000.5,
    adverts_sent=10,
    adverts_received=7,
    updated_at=1_767_000_001.0,
)


def beat_with(**changes: object) -> str:
    data = json.loads(BEAT.encode())
    data.update(changes)
    return json.dumps(data)


def test_a_heartbeat_reads_back_as_it_was_written() -> None:
    assert statekeys.Heartbeat.decode(BEAT.encode()) == BEAT
    assert statekeys.Heartbeat.decode(BEAT.encode()).demotion_total == 480


def test_a_virtual_hosts_hash_reads_back_as_it_was_written() -> None:
    stored = VHOST.to_hash()
    assert all(isinstance(value, str) for value in stored.values())  # as Redis hands it back
    assert statekeys.VhostState.from_hash(stored) == VHOST


def test_what_an_older_engine_did_not_write_takes_its_default() -> None:
    beat = statekeys.Heartbeat.decode('{"node": "node1", "at": 1767000000}')
    assert (beat.demotion, beat.problems, beat.config_source, beat.pid) == ((), (), "none", 0)
    assert beat.checks == ()
    vhost = statekeys.VhostState.from_hash({"state": "MASTER", "vhid": "42", "advskew": ""})
    assert (vhost.state, vhost.advskew, vhost.last_at, vhost.updated_at) == (
        State.MASTER,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(beat_with(at="nan"), "at", id="at-nan-string"),
        pytest.param(beat_with(at=float("nan")), "at", id="at-NaN-literal"),
        pytest.param(beat_with(at=float("inf")), "at", id="at-infinity"),
        pytest.param(beat_with(at=1e300), "at", id="at-past-year-9999"),
        pytest.param(beat_with(at=-1), "at", id="at-before-1970"),
        pytest.param(beat_with(at="soon"), "at", id="at-not-a-number"),
        pytest.param(beat_with(at=True), "at", id="at-a-boolean"),
        pytest.param(beat_with(at=None), "at", id="at-missing"),
        pytest.param(beat_with(pid="x"), "pid", id="pid-not-a-number"),
        pytest.param(beat_with(pid=1.5), "pid", id="pid-not-whole"),
        pytest.param(beat_with(pid=2**64), "pid", id="pid-huge"),
        pytest.param(beat_with(drops=[1]), "drops", id="drops-not-an-object"),
        pytest.param(beat_with(drops={"bad_hmac": "many"}), "bad_hmac", id="a-drop-count"),
        pytest.param(beat_with(demotion={"a": 1}), "demotion", id="demotion-not-a-list"),
        pytest.param(
            beat_with(demotion=[{"source": "whim", "level": 1}]), "demotion", id="unknown-source"
        ),
        pytest.param(
            beat_with(demotion=[{"source": "maintenance", "level": -5}]),
            "level",
            id="negative-level",
        ),
        pytest.param(beat_with(problems=["vhid 42"]), "problems", id="a-problem-not-an-object"),
        pytest.param(beat_with(checks={"smtp-25": {}}), "checks", id="checks-not-a-list"),
        pytest.param(beat_with(checks=["smtp-25"]), "checks", id="a-check-not-an-object"),
        pytest.param(beat_with(checks=[{"kind": "smtp"}]), "checks", id="a-check-without-name"),
        pytest.param(
            beat_with(checks=[{"name": "a", "passing": "yes"}]), "checks", id="passing-not-bool"
        ),
        pytest.param(
            beat_with(checks=[{"name": "a", "gating": 1}]), "checks", id="gating-not-bool"
        ),
        pytest.param(
            beat_with(checks=[{"name": "a", "count": -1}]), "checks", id="a-negative-count"
        ),
        pytest.param(
            beat_with(checks=[{"name": "a", "last_at": "nan"}]), "checks", id="a-check-time-nan"
        ),
        pytest.param("node1 is alive {", "heartbeat", id="not-json"),
        pytest.param("[1, 2]", "heartbeat", id="not-an-object"),
        pytest.param(b"\xff\xfe", "heartbeat", id="not-text"),
    ],
)
def test_a_heartbeat_that_does_not_parse_is_unreadable_naming_the_field(
    raw: str | bytes, field: str
) -> None:
    with pytest.raises(statekeys.Unreadable) as caught:
        statekeys.Heartbeat.decode(raw)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError see it too


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"updated_at": "soon"}, "updated_at", id="updated_at-not-a-number"),
        pytest.param({"updated_at": "1e300"}, "updated_at", id="updated_at-past-year-9999"),
        pytest.param({"updated_at": "9" * 400}, "updated_at", id="updated_at-huge"),
        pytest.param({"updated_at": "nan"}, "updated_at", id="updated_at-nan"),
        pytest.param({"last_at": "yesterday"}, "last_at", id="last_at-not-a-number"),
        pytest.param({"last_at": "-inf"}, "last_at", id="last_at-minus-infinity"),
        pytest.param({"state": "PRIMARY"}, "state", id="unknown-state"),
        pytest.param({"state": ""}, "state", id="no-state"),
        pytest.param({"last_from": "ACTIVE"}, "last_from", id="unknown-last_from"),
        pytest.param({"vhid": "forty-two"}, "vhid", id="vhid-not-a-number"),
        pytest.param({"advskew": "-1"}, "advskew", id="negative-advskew"),
        pytest.param({"adverts_sent": "1e3"}, "adverts_sent", id="count-not-whole"),
    ],
)
def test_a_virtual_host_hash_that_does_not_parse_is_unreadable_naming_the_field(
    changes: dict[str, str], field: str
) -> None:
    with pytest.raises(statekeys.Unreadable) as caught:
        statekeys.VhostState.from_hash({**VHOST.to_hash(), **changes})
    assert caught.value.field == field
    assert field in str(caught.value)


def test_a_state_in_lower_case_is_still_the_engines_state() -> None:
    vhost = statekeys.VhostState.from_hash({**VHOST.to_hash(), "state": "master"})
    assert vhost.state is State.MASTER


def test_messages_round_trip_and_a_foreign_one_is_unreadable() -> None:
    transition = statekeys.TransitionMessage(
        "node1", "eth0", 42, State.MASTER, State.BACKUP, "maintenance", 5.0, "maintenance"
    )
    assert statekeys.decode_message(statekeys.encode_message(transition)) == transition
    with pytest.raises(statekeys.Unreadable) as caught:
        statekeys.decode_message('{"kind": "gossip", "node": "node1"}')
    assert caught.value.field == "kind"
    bad = json.loads(statekeys.encode_message(transition)) | {"to": "PRIMARY"}
    with pytest.raises(statekeys.Unreadable) as caught:
        statekeys.decode_message(json.dumps(bad))
    assert caught.value.field == "to"


EVENT = {
    "id": 7, "kind": "owner_changed", "message": "VHID 1 on eth0: owner node1 → node2.",
    "at": "2026-12-02T03:32:48.123456Z", "vhid": 1, "interface": "eth0", "node": "",
    "old_owner": "node1", "new_owner": "node2", "cause": "master_down",
    "detail": {"silence": 3.1}, "dedup_key": "owner:eth0:1#3",
}  # fmt: skip


def test_a_cluster_event_message_carries_the_event_as_the_api_shows_it() -> None:
    message = statekeys.ClusterEventMessage.from_public(EVENT)
    raw = statekeys.encode_message(message)
    # Nested: the event's kind is not the message's.
    assert json.loads(raw) == {"kind": "cluster_event", "event": EVENT}
    decoded = statekeys.decode_message(raw)
    assert decoded == message
    assert isinstance(decoded, statekeys.ClusterEventMessage)
    assert decoded.public() == EVENT


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": None}, "id"),
        ({"id": "seven"}, "id"),
        ({"at": "yesterday"}, "at"),
        ({"vhid": 1.5}, "vhid"),
        ({"detail": ["a"]}, "detail"),
        ({"message": {"text": "x"}}, "message"),
    ],
)
def test_a_cluster_event_message_that_does_not_parse_is_unreadable_naming_the_field(
    change: dict[str, object], field: str
) -> None:
    raw = json.dumps({"kind": "cluster_event", "event": EVENT | change})
    with pytest.raises(statekeys.Unreadable) as caught:
        statekeys.decode_message(raw)
    assert caught.value.field == field
