"""The node host around the engine (apply, state, history, engine), without root:
fake ports, a private Redis."""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from cluster import services, statekeys
from cluster.carp.fakes import FakeAddresses, FakeGratuitous, FakeLink
from cluster.carp.runner import HostSnapshot, Runner, RunnerSnapshot
from cluster.carp.types import DemotionSource, Reason, State, VirtualHostConfig
from cluster.models import Transition
from cluster.node import apply, history
from cluster.node import engine as node_engine
from cluster.node import state as node_state
from tests.carp.netns import wait_until
from tests.factories import ALIAS_SECRET, make_alias, make_nodes

VIP = ipaddress.ip_interface("192.0.2.100/32")
SRC = ipaddress.ip_address("192.0.2.11")


def vhost(vhid: int = 42, advskew: int = 0, password: bytes = b"s3cret") -> VirtualHostConfig:
    return VirtualHostConfig(
        vhid=vhid,
        interface="eth0",
        password=password,
        addresses=(ipaddress.ip_interface(f"192.0.2.{vhid}/32"),),
        advskew=advskew,
        src_ip=SRC,
    )


def node_config(*vhosts: VirtualHostConfig, version: str = "v1", maintenance: bool = False):
    return apply.NodeConfig("node1", tuple(vhosts), maintenance, version)


def host_snapshot(state: State = State.MASTER, **kw) -> HostSnapshot:
    values: dict[str, Any] = {
        "interface": "eth0",
        "vhid": 42,
        "state": state,
        "advbase": 1,
        "advskew": 0,
        "addresses": (VIP,),
        "adverts_sent": 3,
        "adverts_received": 0,
        "last_reason": Reason.MASTER_DOWN,
        "master": SRC if state is State.MASTER else None,
        "last_from": State.BACKUP,
        "last_at": 1234.5,
    }
    values.update(kw)
    return HostSnapshot(**values)


class SnapshotBox:
    """A settable RunnerSnapshot for a publisher under test."""

    def __init__(self, *hosts: HostSnapshot) -> None:
        self.snap = RunnerSnapshot(tuple(hosts), {"bad_hmac": 2}, {}, True)

    def __call__(self) -> RunnerSnapshot:
        return self.snap

    def set(self, *hosts: HostSnapshot) -> None:
        self.snap = RunnerSnapshot(tuple(hosts), self.snap.drops, {}, True)


def status() -> node_state.NodeStatus:
    return node_state.NodeStatus("v1", "database")


def client(url: str):
    return statekeys.sync_client(url)


# ---- the publisher ---------------------------------------------------------------------
def test_publishing_never_blocks_when_redis_is_gone_and_overflows_are_counted(tmp_path):
    dead = f"redis+socket://{tmp_path / 'nobody-listens.sock'}"
    publisher = node_state.RedisStatePublisher(
        "node1", dead, SnapshotBox(host_snapshot()), status, queue_size=100, interval=0.01
    )
    publisher.start()
    try:
        began = time.monotonic()
        for _ in range(20_000):
            publisher.publish(
                "eth0", 42, State.MASTER, Reason.MASTER_DOWN, old=State.BACKUP, at=time.time()
            )
            publisher.changed("eth0", 42)
        # 40,000 calls: each is a put_nowait, never a connection attempt.
        assert time.monotonic() - began < 1.0
        assert publisher.overflows > 0
        wait_until(lambda: publisher.redis_down, 5, what="the drainer to notice the outage")
    finally:
        publisher.stop()


def test_the_drainer_logs_a_redis_outage_once_not_per_message(tmp_path, caplog):
    dead = f"redis+socket://{tmp_path / 'nobody-listens.sock'}"
    publisher = node_state.RedisStatePublisher(
        "node1", dead, SnapshotBox(host_snapshot()), status, interval=0.01
    )
    publisher.start()
    try:
        for _ in range(50):
            publisher.changed("eth0", 42)
            time.sleep(0.005)
    finally:
        publisher.stop()
    outage_lines = [r for r in caplog.records if "Redis" in r.getMessage()]
    assert len(outage_lines) == 1, [r.getMessage() for r in outage_lines]


def test_it_writes_the_contracts_keys_and_messages(redis_url):
    box = SnapshotBox(host_snapshot())
    publisher = node_state.RedisStatePublisher("node1", redis_url, box, status, interval=0.05)
    r = client(redis_url)
    sub = r.pubsub()
    sub.subscribe(statekeys.EVENTS_CHANNEL)
    sub.get_message(timeout=1)  # the subscribe confirmation
    publisher.start()
    try:
        publisher.publish("eth0", 42, State.MASTER, Reason.MASTER_DOWN, old=State.BACKUP, at=5.0)
        messages: list[dict[str, Any]] = []

        def seen_all() -> bool:
            messages.extend(_drain(sub))
            return {"transition", "vhost", "heartbeat"} <= {m["kind"] for m in messages}

        wait_until(
            seen_all,
            5,
            what="transition, vhost and heartbeat messages",
        )
        transition = next(m for m in messages if m["kind"] == "transition")
        assert (transition["from"], transition["to"], transition["at"]) == ("BACKUP", "MASTER", 5.0)
        assert transition["reason"] == "master_down"
        assert {"kind": "node", "node": "node1", "status": "started"}.items() <= next(
            m for m in messages if m["kind"] == "node"
        ).items()
        fields = r.hgetall(statekeys.vhost_key("node1", "eth0", 42))
        assert tuple(sorted(fields)) == tuple(sorted(statekeys.VhostState.FIELDS))
        assert (fields["state"], fields["master"], fields["last_from"]) == (
            "MASTER",
            "192.0.2.11",
            "BACKUP",
        )
        assert r.smembers(statekeys.node_vhosts_key("node1")) == {"eth0:42"}
        beat = json.loads(r.get(statekeys.heartbeat_key("node1")))
        assert (beat["config_source"], beat["drops"]) == ("database", {"bad_hmac": 2})
        # It names its connection, and Redis lists it under that name (the console's
        # sign of life that ends the moment the process dies: cluster/live.py).
        assert beat["client"] == "carp-node:node1"
        assert "carp-node:node1" in {c["name"] for c in r.client_list()}
        assert 0 < r.ttl(statekeys.heartbeat_key("node1")) <= statekeys.HEARTBEAT_TTL
        # A vhost that the node no longer runs leaves the set and its hash goes.
        box.set()
        wait_until(
            lambda: not r.exists(statekeys.vhost_key("node1", "eth0", 42)), 5, what="cleanup"
        )
    finally:
        publisher.stop()
    assert not r.exists(statekeys.heartbeat_key("node1"))
    assert any(m.get("status") == "stopped" for m in _drain(sub))
    sub.close()
    r.close()


def _drain(sub) -> list[dict[str, Any]]:
    found = []
    while (message := sub.get_message(timeout=0.05)) is not None:
        if message["type"] == "message":
            found.append(statekeys.message_dict(statekeys.decode_message(message["data"])))
    return found


def test_after_a_redis_outage_it_republishes_the_whole_state(redis_server, redis_url):
    # The drainer's steps called directly (no thread), so the subscriber is surely
    # listening before the catch-up tick.
    box = SnapshotBox(host_snapshot(State.BACKUP, master=ipaddress.ip_address("192.0.2.12")))
    publisher = node_state.RedisStatePublisher("node1", redis_url, box, status)
    key = statekeys.vhost_key("node1", "eth0", 42)
    try:
        publisher.tick()
        r = client(redis_url)
        assert r.hget(key, "state") == "BACKUP"
        r.close()
        redis_server.stop()
        # The master died while Redis was away: this node took over.
        box.set(host_snapshot(State.MASTER))
        began = time.monotonic()
        publisher.tick()
        publisher._handle(
            [
                (
                    "transition",
                    statekeys.TransitionMessage(
                        "node1", "eth0", 42, State.BACKUP, State.MASTER, "master_down", 9.0
                    ),
                )
            ]
        )
        assert publisher.redis_down
        assert time.monotonic() - began < 0.5  # no retries with backoff inside the drainer
        redis_server.start()
        r = client(redis_url)
        sub = r.pubsub()
        sub.subscribe(statekeys.EVENTS_CHANNEL)
        sub.get_message(timeout=1)
        publisher.tick()
        assert not publisher.redis_down
        assert (r.hget(key, "state"), r.hget(key, "master")) == ("MASTER", "192.0.2.11")
        vhost_messages = [m for m in _drain(sub) if m["kind"] == "vhost"]
        assert [(m["vhid"], m["state"]) for m in vhost_messages] == [(42, "MASTER")]
        publisher.tick()  # caught up: the next tick refreshes the hashes silently
        assert [m["kind"] for m in _drain(sub)] == ["heartbeat"]
        sub.close()
        r.close()
    finally:
        if redis_server.process is None:
            redis_server.start()


def test_when_redis_returns_the_engine_is_told_to_read_its_configuration(redis_server, redis_url):
    # Apply tasks sent while the broker was down are lost: the engine must not wait
    # for its next resync (a minute) to see what was saved meanwhile.
    box = SnapshotBox(host_snapshot(State.BACKUP))
    calls: list[float] = []
    publisher = node_state.RedisStatePublisher(
        "node1", redis_url, box, status, on_reconnect=lambda: calls.append(time.monotonic())
    )
    try:
        publisher.tick()
        assert calls == []  # up from the start: nothing to catch up on
        redis_server.stop()
        publisher.tick()
        assert calls == []
        redis_server.start()
        publisher.tick()
        assert len(calls) == 1
        publisher.tick()
        assert len(calls) == 1
    finally:
        if redis_server.process is None:
            redis_server.start()


def test_resync_now_wakes_the_config_thread_at_once(make_engine):
    source = ConfigSource(node_config(vhost(42), version="v1"))
    engine = make_engine(source, resync_interval=3600)
    engine.start()
    wait_until(lambda: set(hosts(engine)) == {42}, 5, what="vhid 42 to start")
    source.config = node_config(vhost(42), vhost(43), version="v2")
    engine.resync_now()
    wait_until(lambda: set(hosts(engine)) == {42, 43}, 2, what="vhid 43 without waiting an hour")


def test_a_stopped_hosts_last_transition_reaches_its_hash(redis_url):
    box = SnapshotBox(host_snapshot(State.MASTER))
    publisher = node_state.RedisStatePublisher("node1", redis_url, box, status)
    publisher.tick()
    box.set()  # the runner removed the host as it stopped
    publisher._handle(
        [
            (
                "transition",
                statekeys.TransitionMessage(
                    "node1", "eth0", 42, State.MASTER, State.INIT, "shutdown", 7.0
                ),
            )
        ]
    )
    r = client(redis_url)
    fields = r.hgetall(statekeys.vhost_key("node1", "eth0", 42))
    assert (fields["state"], fields["last_from"], fields["last_reason"]) == (
        "INIT",
        "MASTER",
        "shutdown",
    )
    r.close()


def test_a_transition_is_announced_only_after_its_hash_is_written(redis_url, monkeypatch):
    # A reader woken by the message (the event stream) reads the hashes at once: they
    # must already hold the new state. Redis runs a pipeline in order, so the order
    # of the queued commands is the order a subscriber sees.
    import redis.client

    queued: list[tuple[str, str]] = []
    execute = redis.client.Pipeline.execute

    def spy(self, *args, **kwargs):
        for args, _options in self.command_stack:
            name, key = args[0], args[1]
            if name in ("HSET", "PUBLISH"):
                kind = json.loads(args[2])["kind"] if name == "PUBLISH" else key
                queued.append((name, kind))
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", spy)
    box = SnapshotBox(host_snapshot(State.MASTER))
    publisher = node_state.RedisStatePublisher("node1", redis_url, box, status)
    publisher._handle(
        [
            (
                "transition",
                statekeys.TransitionMessage(
                    "node1", "eth0", 42, State.BACKUP, State.MASTER, "master_down", 9.0
                ),
            )
        ]
    )
    key = statekeys.vhost_key("node1", "eth0", 42)
    assert ("HSET", key) in queued
    assert ("PUBLISH", "transition") in queued
    assert queued.index(("HSET", key)) < queued.index(("PUBLISH", "transition"))


# ---- the local configuration -----------------------------------------------------------
def test_the_local_file_round_trips_encrypted_and_private(tmp_path):
    store = apply.LocalConfigStore.for_node(tmp_path, "node1")
    config = node_config(vhost(42, password=b"pass-word-42"), vhost(43, advskew=100))
    store.save(config)
    assert store.path == tmp_path / "carp" / "node1.json"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    text = store.path.read_text()
    assert b"pass-word-42" not in text.encode()
    assert "192.0.2.42" not in text
    assert store.load() == config
    assert [p.name for p in store.path.parent.iterdir()] == ["node1.json"]  # no temp left


def test_a_missing_or_unreadable_local_file_is_no_configuration(tmp_path, settings):
    store = apply.LocalConfigStore.for_node(tmp_path, "node1")
    assert store.load() is None
    store.save(node_config(vhost()))
    settings.CLUSTER_SECRET_KEY = "another-key-of-at-least-32-characters!!"
    assert store.load() is None


# ---- the engine over fake ports ----------------------------------------------------------
class SelectableFakeLink(FakeLink):
    """A FakeLink the runner can select() on (never readable), so the loop sleeps."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._read, self._write = os.pipe()

    def fileno(self) -> int:
        return self._read

    def close(self) -> None:
        super().close()
        for fd in (self._read, self._write):
            os.close(fd)


class FakePorts:
    def __init__(self) -> None:
        self.addresses = FakeAddresses()
        self.links: list[FakeLink] = []
        self.watched: set[str] = set()
        self.closed = False

    def runner(self, configs, **options) -> Runner:
        def open_link(interface, source):
            link = SelectableFakeLink(interface, source)
            self.links.append(link)
            return link

        return Runner(
            configs,
            open_link=open_link,
            addresses=self.addresses,
            gratuitous=FakeGratuitous(),
            **options,
        )

    def watch(self, interfaces) -> None:
        self.watched |= set(interfaces)

    def start(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FirstLinkFails(FakePorts):
    """The first link cannot be opened (an interface not there yet), later ones can."""

    def runner(self, configs, **options) -> Runner:
        runner = super().runner(configs, **options)
        opener = runner._open_link
        failed: list[str] = []

        def open_link(interface, source):
            if not failed:
                failed.append(interface)
                raise OSError(19, "No such device")
            return opener(interface, source)

        runner._open_link = open_link
        return runner


class ConfigSource:
    """A stand-in for the database: answers with ``config`` or raises ``error``."""

    def __init__(self, config=None, error: Exception | None = None) -> None:
        self.config = config
        self.error = error
        self.reads = 0

    def __call__(self, node: str):
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.config


@pytest.fixture
def make_engine(tmp_path, redis_url):
    engines: list[node_engine.Engine] = []

    def make(source: ConfigSource, **kw) -> node_engine.Engine:
        engine = node_engine.Engine(
            "node1",
            kw.pop("ports", None) or FakePorts(),
            redis_url=redis_url,
            store=apply.LocalConfigStore.for_node(tmp_path, "node1"),
            retention_days=30,
            read_config=source,
            startup_timeout=kw.pop("startup_timeout", 1.0),
            retry_interval=kw.pop("retry_interval", 0.05),
            heartbeat_interval=0.05,
            **kw,
        )
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop(timeout=5)


def hosts(engine: node_engine.Engine) -> dict[int, HostSnapshot]:
    return {h.vhid: h for h in engine.runner.snapshot().hosts}


def test_converge_skips_a_configuration_it_already_applied(make_engine, monkeypatch):
    source = ConfigSource(node_config(vhost(42), version="v1"))
    engine = make_engine(source)
    calls = []
    real = engine.runner.reconfigure

    def spy(configs, retired=()):
        calls.append(configs)
        real(configs, retired)

    monkeypatch.setattr(engine.runner, "reconfigure", spy)
    engine.start()
    assert [len(c) for c in calls] == [1]
    assert engine.converge()["changed"] is False
    assert len(calls) == 1
    source.config = node_config(vhost(42), vhost(43), version="v2")
    assert engine.converge()["changed"] is True
    wait_until(lambda: set(hosts(engine)) == {42, 43}, 5, what="vhid 43 to start")
    assert engine.store.load() == source.config


def test_a_local_save_that_failed_is_tried_again_at_the_next_converge(make_engine, monkeypatch):
    source = ConfigSource(node_config(vhost(42), version="v1"))
    engine = make_engine(source)
    real_save = engine.store.save

    def full_disk(config):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine.store, "save", full_disk)
    engine.start()
    assert engine.store.load() is None
    monkeypatch.setattr(engine.store, "save", real_save)
    assert (
        engine.converge()["changed"] is False
    )  # nothing to apply: the save is retried all the same
    assert engine.store.load() == source.config


def test_a_read_overtaken_by_a_newer_one_is_not_applied_after_it(make_engine):
    # Two converges at once (the config thread and an apply task, or two apply tasks
    # on the threads pool): the one that read first must not apply last, or the node
    # would run the older configuration until the next resync.
    source = ConfigSource(node_config(vhost(42), version="v1"))
    engine = make_engine(source)
    engine.start()
    inside, release = threading.Event(), threading.Event()
    newer = node_config(vhost(42), vhost(43), version="v3")

    def slow_read(node: str):
        seen = source.config  # what the database held when this read ran
        if threading.current_thread().name == "first":
            inside.set()
            release.wait(5)
        return seen

    engine.read_config = slow_read
    source.config = node_config(vhost(42), vhost(44), version="v2")
    first = threading.Thread(target=engine.converge, name="first")
    first.start()
    assert inside.wait(5)
    source.config = newer
    second = threading.Thread(target=engine.converge, name="second")
    second.start()
    second.join(0.5)
    release.set()
    first.join(5)
    second.join(5)
    assert engine.applied is not None
    assert engine.applied.version == "v3"
    assert engine.store.load() == newer


def test_a_virtual_host_that_could_not_start_is_retried_at_the_same_version(make_engine):
    # Its socket could not be opened (the interface not there yet): the runner logs it
    # and runs the others. Level-triggered, the next converge must start it, even
    # though the configuration's version has not changed.
    source = ConfigSource(node_config(vhost(42), vhost(43), version="v1"))
    engine = make_engine(source, ports=FirstLinkFails())
    engine.start()
    wait_until(lambda: set(hosts(engine)) == {43}, 5, what="vhid 43 to start alone")
    assert engine.converge()["changed"] is False
    wait_until(lambda: set(hosts(engine)) == {42, 43}, 5, what="vhid 42 to be retried")


def test_maintenance_demotes_the_node_by_240(make_engine):
    source = ConfigSource(node_config(vhost(42, advskew=20), version="v1"))
    engine = make_engine(source)
    engine.start()
    source.config = node_config(vhost(42, advskew=20), version="v2", maintenance=True)
    engine.converge()
    wait_until(lambda: hosts(engine)[42].advertised_advskew == 240, 5, what="the demotion")
    assert engine.runner.snapshot().demotion == (
        DemotionSource("maintenance", node_engine.MAINTENANCE_DEMOTION, "maintenance"),
    )
    assert node_engine.MAINTENANCE_DEMOTION == 240


def test_with_the_database_down_it_starts_from_the_local_file_then_converges(make_engine, tmp_path):
    apply.LocalConfigStore.for_node(tmp_path, "node1").save(node_config(vhost(42), version="old"))
    source = ConfigSource(error=ConnectionError("database is down"))
    engine = make_engine(source, startup_timeout=0.2)
    engine.start()
    assert engine.config_source == "local"
    wait_until(lambda: set(hosts(engine)) == {42}, 5, what="the local configuration to run")
    reads = source.reads
    wait_until(lambda: source.reads > reads + 1, 5, what="the database to be retried")
    source.config = node_config(vhost(43), version="new")
    source.error = None
    wait_until(lambda: engine.config_source == "database", 5, what="the database to win")
    wait_until(lambda: set(hosts(engine)) == {43}, 5, what="the database's configuration")
    # The copy is saved after the runner was handed the configuration: wait for it too.
    wait_until(lambda: engine.saved_version == "new", 5, what="the local copy to be saved")
    assert engine.store.load().version == "new"


def test_with_no_database_and_no_file_it_runs_nothing_and_keeps_trying(make_engine):
    source = ConfigSource(error=ConnectionError("database is down"))
    engine = make_engine(source, startup_timeout=0.2)
    engine.start()
    assert (engine.applied, engine.config_source) == (None, "none")
    assert engine.runner.snapshot().hosts == ()
    source.config, source.error = node_config(vhost(42)), None
    wait_until(lambda: set(hosts(engine)) == {42}, 5, what="the configuration to arrive")


def test_a_graceful_stop_removes_the_vips_and_closes_the_ports(make_engine):
    engine = make_engine(ConfigSource(node_config(vhost(42, advskew=0))))
    engine.start()
    # No peer: the lone node is MASTER after 3 x advbase (CARP.md).
    wait_until(lambda: hosts(engine)[42].state is State.MASTER, 6, what="MASTER")
    assert engine.ports.addresses.list("eth0") == {ipaddress.ip_interface("192.0.2.42/32")}
    assert engine.stop(timeout=5)
    assert engine.ports.addresses.list("eth0") == set()
    assert engine.ports.closed


# ---- configuration from the database ---------------------------------------------------
# The node host's database code (read_database, the recorder) calls
# close_old_connections(), as a worker thread must. Inside a test's transaction that
# closes the connection: harmless on SQLite's in-memory test database, fatal on
# PostgreSQL. A worker never reads inside a transaction, so these tests do not
# either (transaction=True): they run as the node does, on both databases.
@pytest.mark.django_db(transaction=True)
def test_read_database_builds_the_nodes_virtual_hosts_and_a_version():
    node1, _node2, _node3 = make_nodes(3)
    alias = make_alias(42)
    config = apply.read_database("node1")
    assert [(v.vhid, v.password, v.src_ip) for v in config.vhosts] == [
        (42, ALIAS_SECRET.encode(), ipaddress.ip_address(node1.address))
    ]
    assert apply.read_database("node1").version == config.version
    services.update_alias(None, alias, {"addresses": ["192.0.2.42/24", "192.0.2.43/24"]},
                          partial=True)  # fmt: skip
    assert apply.read_database("node1").version != config.version
    before = apply.read_database("node1").version
    services.update_node(None, node1, {"maintenance": True}, partial=True)
    after = apply.read_database("node1")
    assert (after.maintenance, after.version != before) == (True, True)
    assert apply.read_database("node3").vhosts == ()  # not in the alias
    assert apply.read_database("nobody").vhosts == ()


@pytest.mark.django_db(transaction=True)
def test_an_alias_deleted_and_created_again_with_another_password_is_a_new_version():
    # Same vhid, addresses and priorities, version 1 both times: only the password
    # differs, and it stays out of the digest. A node that missed the delete (its
    # worker down, the broker down, or it started from its local copy) must still
    # take the new password, or its adverts fail every peer's HMAC.
    make_nodes(3)
    alias = make_alias(42)
    before = apply.read_database("node1")
    services.delete_alias(None, alias)
    make_alias(42, password="another-secret")
    after = apply.read_database("node1")
    assert after.vhosts[0].password == b"another-secret"
    assert after.version != before.version


# ---- history ---------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_transitions_are_written_kept_while_the_database_fails_and_bounded(monkeypatch):
    make_nodes(1)
    recorder = history.TransitionRecorder("node1", retention_days=30, buffer_size=3)
    at = time.time()
    recorder.add("eth0", 42, "BACKUP", "MASTER", "master_down", at)
    fail = threading.Event()
    fail.set()
    real = Transition.objects.bulk_create

    def bulk_create(objs, *args, **kwargs):
        if fail.is_set():
            raise ConnectionError("database is down")
        return real(objs, *args, **kwargs)

    monkeypatch.setattr(Transition.objects, "bulk_create", bulk_create)
    assert recorder.flush() is False
    assert recorder.pending == 1
    for vhid in (43, 44, 45):
        recorder.add("eth0", vhid, "INIT", "BACKUP", "startup", at)
    assert (recorder.pending, recorder.dropped) == (3, 1)  # the oldest went
    fail.clear()
    assert recorder.flush() is True
    assert recorder.pending == 0
    rows = list(Transition.objects.order_by("vhid").values_list("vhid", "to_state", "reason"))
    assert rows == [(43, "BACKUP", "startup"), (44, "BACKUP", "startup"),
                    (45, "BACKUP", "startup")]  # fmt: skip
    row = Transition.objects.get(vhid=43)
    assert abs(row.at.timestamp() - at) < 0.001
    assert row.node.name == "node1"


@pytest.mark.django_db(transaction=True)
def test_old_transitions_are_pruned_by_the_recorder_and_the_command():
    (node,) = make_nodes(1)
    now = timezone.now()
    for days in (40, 31, 29, 1):
        Transition.objects.create(
            node=node, vhid=days, from_state="BACKUP", to_state="MASTER", reason="master_down",
            at=now - datetime.timedelta(days=days),
        )  # fmt: skip
    assert history.TransitionRecorder("node1", retention_days=30).prune() == 2
    assert sorted(Transition.objects.values_list("vhid", flat=True)) == [1, 29]
    call_command("prune_transitions", days=10)
    assert list(Transition.objects.values_list("vhid", flat=True)) == [1]


@pytest.mark.django_db(transaction=True)
def test_the_recorder_prunes_on_its_own_while_no_transition_comes():
    # Its thread used to sleep until the next transition: a quiet cluster never pruned.
    (node,) = make_nodes(1)
    old = timezone.now() - datetime.timedelta(days=40)
    Transition.objects.create(
        node=node, vhid=7, from_state="BACKUP", to_state="MASTER", reason="master_down", at=old
    )
    recorder = history.TransitionRecorder("node1", retention_days=30, prune_interval=0.1)
    recorder.start()
    try:
        wait_until(lambda: not Transition.objects.exists(), timeout=5, what="the old row pruned")
        # And again later, with still no transition in between.
        Transition.objects.create(
            node=node, vhid=8, from_state="BACKUP", to_state="MASTER", reason="master_down", at=old
        )
        wait_until(lambda: not Transition.objects.exists(), timeout=5, what="pruned again")
    finally:
        recorder.stop()


# ---- what the node reports: demotion sources and aliases left out ------------------------
def heartbeat(url: str) -> statekeys.Heartbeat | None:
    """node1's heartbeat as the web reads it (the contract's own parser)."""
    r = client(url)
    try:
        raw = r.get(statekeys.heartbeat_key("node1"))
    finally:
        r.close()
    return statekeys.Heartbeat.decode(raw) if raw else None


def test_the_heartbeat_in_redis_carries_every_demotion_source(make_engine, redis_url):
    source = ConfigSource(node_config(vhost(42), vhost(43, advskew=20), version="v1"))
    engine = make_engine(source)
    engine.start()
    source.config = node_config(vhost(42), vhost(43, advskew=20), version="v2", maintenance=True)
    engine.converge()
    engine.runner.post_link_state("eth0", False)  # the runner's own source, link:eth0
    sources = (
        DemotionSource("link:eth0", 240, "link eth0 down"),
        DemotionSource("maintenance", 240, "maintenance"),
    )
    wait_until(
        lambda: (beat := heartbeat(redis_url)) is not None and beat.demotion == sources,
        5,
        what="both sources in the heartbeat",
    )
    beat = heartbeat(redis_url)
    assert beat is not None
    assert beat.demotion_total == 480
    # Leaving maintenance clears that source alone.
    source.config = node_config(vhost(42), vhost(43, advskew=20), version="v3")
    engine.converge()
    wait_until(
        lambda: (beat := heartbeat(redis_url)) is not None and beat.demotion == sources[:1],
        5,
        what="maintenance to leave the heartbeat, the link's source to stay",
    )


@pytest.mark.django_db(transaction=True)
def test_a_demoted_masters_transition_keeps_its_source_in_the_history():
    make_nodes(1)
    recorder = history.TransitionRecorder("node1", retention_days=30)
    recorder.add("eth0", 42, "MASTER", "BACKUP", "maintenance", time.time(), "maintenance")
    recorder.add("eth1", 43, "MASTER", "BACKUP", "link_down", time.time(), "link:eth0")
    assert recorder.flush() is True
    assert list(Transition.objects.order_by("vhid").values_list("vhid", "reason", "source")) == [
        (42, "maintenance", "maintenance"),
        (43, "link_down", "link:eth0"),
    ]


def encrypted_under_another_key(password: bytes) -> str:
    """A token as a database written under another CLUSTER_SECRET_KEY holds it."""
    from cluster import crypto

    return crypto._fernet_for("another key of at least 32 characters!").encrypt(password).decode()


@pytest.mark.django_db(transaction=True)
def test_an_alias_it_cannot_decrypt_is_left_out_reported_and_the_others_held(
    make_engine, redis_url, settings, alice, sam
):
    from django.utils.html import escape

    from cluster.models import IPAlias
    from tests.api.conftest import token_client
    from tests.pages.helpers import client_for

    make_nodes(2)
    make_alias(42)
    make_alias(43)
    IPAlias.objects.filter(vhid=42).update(password_encrypted=encrypted_under_another_key(b"x"))
    engine = make_engine(apply.read_database)  # the real read, from the real database
    engine.start()
    # No peer: node1 holds vhid 43 after one master-down interval (3 s, CARP.md).
    wait_until(
        lambda: 43 in hosts(engine) and hosts(engine)[43].state is State.MASTER,
        6,
        what="vhid 43 to be held",
    )
    assert set(hosts(engine)) == {43}
    assert engine.ports.addresses.list("eth0") == {ipaddress.ip_interface("192.0.2.43/24")}
    problem = statekeys.ConfigProblem(42, "eth0", services.UNDECRYPTABLE_CAUSE)
    wait_until(
        lambda: (beat := heartbeat(redis_url)) is not None and beat.problems == (problem,),
        5,
        what="the heartbeat to list vhid 42 and why",
    )
    assert engine.store.load().problems == (problem,)  # a start from the copy says it too
    # The console reads the engine's own heartbeat.
    settings.REDIS_URL = redis_url
    message = f"Node node1 cannot run VHID 42 on eth0: {services.UNDECRYPTABLE_CAUSE}."
    body = token_client(sam).get("/api/v1/status/").json()
    assert [a for a in body["alerts"] if a["kind"] == "alias_left_out"] == [
        {"kind": "alias_left_out", "message": message, "node": "node1", "vhid": 42,
         "interface": "eth0"},
    ]  # fmt: skip
    html = client_for(alice).get("/system/cluster/").content.decode()
    assert f'data-alert="alias_left_out">{escape(message)}</li>' in html


# ---- the database away at start, on SQLite and PostgreSQL alike --------------------------
class DatabaseOutage:
    """`apply.read_database` with the database really unreachable while ``down``.

    The reading thread's connection is pointed at a port nobody listens on
    (PostgreSQL) or at a directory (SQLite cannot open one), so the read fails
    inside the driver as in an outage; once ``down`` is cleared it reads the real
    test database again. Only the calling thread's connection changes (Django keeps
    one per thread), so the test's own queries are not affected.
    """

    def __init__(self, nowhere: Path) -> None:
        from django.db import connections

        self.down = True
        self.errors: list[Exception] = []
        self._real = connections["default"].settings_dict
        if self._real["ENGINE"].endswith("sqlite3"):
            nowhere.mkdir()
            self._away = {**self._real, "NAME": str(nowhere)}
        else:
            self._away = {**self._real, "HOST": "127.0.0.1", "PORT": "1"}

    def __call__(self, node: str) -> apply.NodeConfig:
        from django.db import connections

        connection = connections["default"]
        wanted = self._away if self.down else self._real
        if connection.settings_dict is not wanted:
            # Settings first: SQLite's close() keeps an in-memory database open.
            connection.settings_dict = wanted
            connection.close()
        try:
            return apply.read_database(node)
        except Exception as exc:
            self.errors.append(exc)
            raise

    @property
    def failures(self) -> int:
        return len(self.errors)


@pytest.mark.django_db(transaction=True)
def test_a_worker_started_while_the_database_is_down_serves_its_local_copy_then_converges(
    make_engine, redis_url, tmp_path, caplog
):
    # What tests/e2e's test of the same name does with namespaces and SQLite only.
    make_nodes(2)
    make_alias(42)
    first = make_engine(apply.read_database)
    first.start()
    wait_until(lambda: set(hosts(first)) == {42}, 5, what="vhid 42 from the database")
    assert first.config_source == "database"
    wait_until(lambda: first.saved_version is not None, 5, what="the local copy")
    assert first.stop(timeout=5)
    make_alias(43)  # saved while the node is down: its copy does not know it
    outage = DatabaseOutage(tmp_path / "database-away")
    caplog.set_level(logging.INFO, logger="cluster.node")
    engine = make_engine(outage, startup_timeout=0.2)
    engine.start()
    assert outage.failures >= 1
    # The driver's own error, as Django raises it for a database that does not answer.
    assert {type(e) for e in outage.errors} == {OperationalError}
    assert engine.config_source == "local"
    assert "from the local" in caplog.text
    wait_until(lambda: set(hosts(engine)) == {42}, 5, what="the local copy to run")
    wait_until(
        lambda: (beat := heartbeat(redis_url)) is not None and beat.config_source == "local",
        5,
        what="the heartbeat to say config_source local",
    )
    failures = outage.failures
    wait_until(lambda: outage.failures > failures, 5, what="the database to be retried")
    outage.down = False
    wait_until(lambda: engine.config_source == "database", 5, what="the database to win")
    wait_until(lambda: set(hosts(engine)) == {42, 43}, 5, what="what was saved meanwhile")
    wait_until(
        lambda: (beat := heartbeat(redis_url)) is not None and beat.config_source == "database",
        5,
        what="the heartbeat to say config_source database",
    )
    wait_until(lambda: engine.saved_version == engine.applied.version, 5, what="the new copy")
    assert [v.vhid for v in engine.store.load().vhosts] == [42, 43]


# ---- a virtual host that goes away everywhere stops without a bow-out -------------------
@pytest.mark.django_db(transaction=True)
def test_an_alias_disabled_everywhere_is_retired_and_one_moved_away_is_not(
    make_engine, monkeypatch
):
    # converge() alone, as the apply task calls it: no engine threads to write the
    # database beside the test (SQLite locks the table).
    make_nodes(3)
    alias42 = make_alias(42)  # node1 and node2 (tests.factories)
    alias43 = make_alias(43)
    engine = make_engine(apply.read_database)
    calls: list[frozenset[tuple[str, int]]] = []

    def spy(configs, retired=()):
        calls.append(frozenset(retired))

    monkeypatch.setattr(engine.runner, "reconfigure", spy)
    engine.converge()
    assert calls == [frozenset()]
    # Disabled: no node runs vhid 42 any more, so node1 stops it silently.
    services.update_alias(None, alias42, {"enabled": False}, partial=True)
    engine.converge()
    assert calls[-1] == {("eth0", 42)}
    # node1 leaves vhid 43, which node2 and node3 keep: node1 bows out.
    primary = {"node": "node2", "priority": "primary"}
    secondary = {"node": "node3", "priority": "secondary"}
    services.update_alias(None, alias43, {"priorities": [primary, secondary]}, partial=True)
    engine.converge()
    assert len(calls) == 3
    assert calls[-1] == frozenset()
