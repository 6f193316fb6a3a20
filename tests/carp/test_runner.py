"""The runner over in-memory fakes: no root, no sockets, no sleeping (a fake clock)."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from pathlib import Path

import pytest

from cluster.carp import wire
from cluster.carp.config import build_parser, configs_from_args, hooks_from_args
from cluster.carp.fakes import (
    FakeAddresses,
    FakeGratuitous,
    FakeLink,
    FakePublisher,
)
from cluster.carp.runner import Hooks, Runner, counter_start
from cluster.carp.types import DemotionSource, IPAddress, Reason, State, VirtualHostConfig

VIP = ipaddress.ip_interface("192.0.2.100/32")
VIP2 = ipaddress.ip_interface("192.0.2.101/32")
PASSWORD = b"s3cret"


def config(node: int, *, vhid: int = 42, advskew: int = 0, addresses=(VIP,), **kw):
    return VirtualHostConfig(
        vhid=vhid,
        interface="eth0",
        password=kw.pop("password", PASSWORD),
        addresses=tuple(addresses),
        advskew=advskew,
        src_ip=ipaddress.ip_address(f"192.0.2.{10 + node}"),
        **kw,
    )


class BrokenAddresses(FakeAddresses):
    """An AddressManager whose every add fails, as netlink might."""

    def add(self, interface, addresses):
        raise OSError("netlink said no")


class Node:
    """One runner on the shared fake segment, with its own fake ports."""

    def __init__(self, segment, clock, configs, addresses=None, hooks=None):
        self.addresses = addresses or FakeAddresses()
        self.gratuitous = FakeGratuitous()
        self.publisher = FakePublisher()
        self.links: list[FakeLink] = []

        def open_link(interface: str, source: IPAddress) -> FakeLink:
            link = FakeLink(interface, source, segment)
            self.links.append(link)
            return link

        self.runner = Runner(
            configs,
            open_link=open_link,
            addresses=self.addresses,
            gratuitous=self.gratuitous,
            publisher=self.publisher,
            clock=clock,
            hooks=hooks,
        )

    def state(self, vhid: int = 42) -> State:
        return next(h.state for h in self.runner.snapshot().hosts if h.vhid == vhid)

    def holds(self, address=VIP) -> bool:
        return address in self.addresses.list("eth0")


def run_for(clock, nodes, seconds, dt=0.01):
    end = clock.now + seconds
    while clock.now < end:
        clock.advance(dt)
        for node in nodes:
            node.runner.step()


def start(*nodes):
    for node in nodes:
        node.runner.start()


def test_it_elects_the_lower_advskew_after_one_master_down_interval(clock, segment):
    a = Node(segment, clock, [config(1, advskew=0)])
    b = Node(segment, clock, [config(2, advskew=100)])
    start(a, b)
    run_for(clock, [a, b], 2.9)
    assert (a.state(), b.state()) == (State.BACKUP, State.BACKUP)
    run_for(clock, [a, b], 0.3)
    assert (a.state(), b.state()) == (State.MASTER, State.BACKUP)
    assert a.holds()
    assert not b.holds()
    assert a.gratuitous.sent == [("eth0", (VIP,))]
    run_for(clock, [a, b], 5)
    assert (a.state(), b.state()) == (State.MASTER, State.BACKUP)
    # The repeated gratuitous ARP two adverts after the takeover (CARP.md).
    assert len(a.gratuitous.sent) == 2


def test_its_advert_counter_starts_random_and_grows_by_one(clock, segment):
    a = Node(segment, clock, [config(1)])
    start(a)
    run_for(clock, [a], 8)
    counters = [wire.parse(p.payload).counter for p in a.links[0].sent]
    assert len(counters) >= 5
    assert counters == list(range(counters[0], counters[0] + len(counters)))


def test_a_graceful_stop_bows_out_and_the_backup_takes_over_after_its_skew_delay(clock, segment):
    a = Node(segment, clock, [config(1, advskew=0)])
    b = Node(segment, clock, [config(2, advskew=100)])
    start(a, b)
    run_for(clock, [a, b], 4)
    assert a.state() == State.MASTER
    a.runner.shutdown()
    bow_out = wire.parse(a.links[0].sent[-1].payload)
    assert (bow_out.advbase, bow_out.advskew) == (255, 255)
    assert not a.holds()
    run_for(clock, [b], 0.04)  # advskew 100 waits 100/2048 s = 48.8 ms
    assert b.state() == State.BACKUP
    run_for(clock, [b], 0.02)
    assert b.state() == State.MASTER
    assert b.holds()
    assert b.publisher.published[-1].reason == "bow_out"


def test_it_counts_every_refused_packet_per_reason(clock, segment):
    a = Node(segment, clock, [config(1)])
    start(a)
    link = a.links[0]
    peer = ipaddress.ip_address("192.0.2.12")
    good = wire.encode(42, 1, 0, 0, 7, PASSWORD, [VIP])
    link.inject(good, peer, ttl=64)
    link.inject(good[:20], peer)
    link.inject(wire.encode(42, 1, 0, 0, 7, b"wrong", [VIP]), peer)
    link.inject(wire.encode(43, 1, 0, 0, 7, PASSWORD, [VIP]), peer)
    link.inject(bytes([0x31]) + good[1:], peer)
    link.inject(good[:6] + b"\0\0" + good[8:], peer)
    run_for(clock, [a], 0.01)
    drops = a.runner.snapshot().drops
    assert drops == {
        "bad_ttl": 1,
        "too_short": 1,
        "bad_hmac": 1,
        "wrong_vhid": 1,
        "bad_version": 1,
        "bad_checksum": 1,
    }


def test_it_logs_a_drop_reason_at_most_once_per_ten_seconds(clock, segment, caplog):
    a = Node(segment, clock, [config(1)])
    start(a)
    peer = ipaddress.ip_address("192.0.2.12")
    bad = wire.encode(42, 1, 0, 0, 7, b"wrong", [VIP])
    with caplog.at_level(logging.WARNING, logger="cluster.carp"):
        for _ in range(30):  # one bad advert a second for 30 s
            a.links[0].inject(bad, peer)
            run_for(clock, [a], 1.0, dt=0.5)
    logged = [r for r in caplog.records if "bad_hmac" in r.getMessage()]
    assert a.runner.snapshot().drops["bad_hmac"] == 30
    assert 3 <= len(logged) <= 4


def test_it_survives_a_failing_port_and_keeps_advertising(clock, segment, caplog):
    a = Node(segment, clock, [config(1)], addresses=BrokenAddresses())
    start(a)
    with caplog.at_level(logging.ERROR, logger="cluster.carp"):
        run_for(clock, [a], 6)
    assert a.state() == State.MASTER
    assert len(a.links[0].sent) >= 3
    assert a.runner.snapshot().port_errors == {"AddAddresses:eth0": 1}
    assert any("AddAddresses" in r.getMessage() for r in caplog.records)


def test_it_removes_vips_a_crashed_run_left_behind_at_start(clock, segment):
    a = Node(segment, clock, [config(1)])
    a.addresses.add("eth0", [VIP, ipaddress.ip_interface("192.0.2.11/24")])
    start(a)
    assert a.addresses.list("eth0") == {ipaddress.ip_interface("192.0.2.11/24")}


def test_it_runs_many_virtual_hosts_in_one_loop(clock, segment):
    vhids = range(1, 201)
    a = Node(segment, clock, [config(1, vhid=v, addresses=[_vip(v)]) for v in vhids])
    b = Node(segment, clock, [config(2, vhid=v, advskew=50, addresses=[_vip(v)]) for v in vhids])
    start(a, b)
    run_for(clock, [a, b], 5, dt=0.05)
    assert {h.state for h in a.runner.snapshot().hosts} == {State.MASTER}
    assert {h.state for h in b.runner.snapshot().hosts} == {State.BACKUP}
    assert len(a.addresses.list("eth0")) == 200


def _vip(vhid: int):
    return ipaddress.ip_interface(f"198.51.100.{vhid}/32")


def test_reconfigure_touches_only_the_changed_virtual_host(clock, segment):
    a = Node(
        segment,
        clock,
        [config(1, vhid=1, addresses=[_vip(1)]), config(1, vhid=2, addresses=[_vip(2)])],
    )
    start(a)
    run_for(clock, [a], 4)
    before = len(a.publisher.published)
    a.runner.reconfigure(
        [config(1, vhid=1, addresses=[_vip(1)]), config(1, vhid=2, addresses=[_vip(2), VIP2])]
    )
    run_for(clock, [a], 0.01)
    assert len(a.publisher.published) == before  # nobody changed state
    assert {_vip(1), _vip(2), VIP2} <= a.addresses.list("eth0")
    a.runner.reconfigure([config(1, vhid=1, addresses=[_vip(1)])])
    run_for(clock, [a], 0.01)
    assert a.addresses.list("eth0") == {_vip(1)}
    assert [h.vhid for h in a.runner.snapshot().hosts] == [1]


def test_link_down_leaves_master_and_link_up_comes_back(clock, segment):
    a = Node(segment, clock, [config(1, advskew=0)])
    b = Node(segment, clock, [config(2, advskew=100)])
    start(a, b)
    run_for(clock, [a, b], 4)
    a.runner.post_link_state("eth0", False)
    segment.up = False
    run_for(clock, [a], 0.01)
    assert a.state() == State.INIT
    assert not a.holds()
    segment.up = True
    run_for(clock, [a, b], 4)
    assert b.state() == State.MASTER
    a.runner.post_link_state("eth0", True)
    run_for(clock, [a, b], 2)
    assert (a.state(), b.state()) == (State.MASTER, State.BACKUP)  # preempted back


def test_its_snapshot_has_states_and_advert_counts(clock, segment):
    a = Node(segment, clock, [config(1)])
    start(a)
    run_for(clock, [a], 5)
    (host,) = a.runner.snapshot().hosts
    assert host.state == State.MASTER
    assert host.last_reason == "master_down"
    assert host.adverts_sent == len(a.links[0].sent)


def test_it_sends_adverts_the_state_machine_asked_for(clock, segment):
    a = Node(segment, clock, [config(1, advskew=7)])
    start(a)
    run_for(clock, [a], 4)
    advert = wire.decode(a.links[0].sent[0].payload, PASSWORD, [VIP])
    assert (advert.vhid, advert.advbase, advert.advskew) == (42, 1, 7)


def test_hooks_run_the_scripts_with_interface_and_address(clock, segment, tmp_path: Path):
    out = tmp_path / "calls"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $1 $2" >> {out}\n')
    script.chmod(0o755)
    hooks = Hooks(str(script), str(script))
    a = Node(segment, clock, [config(1)], hooks=hooks)
    start(a)
    run_for(clock, [a], 4)
    a.runner.shutdown()  # waits for queued hooks
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(_lines(out)) < 3:
        time.sleep(0.01)
    # down at start (not --neutral), up on takeover, down on stop.
    assert _lines(out) == [f"{script} eth0 192.0.2.100"] * 3


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_request_stop_from_another_thread_ends_run_with_a_graceful_stop(clock, segment):
    a = Node(segment, clock, [config(1)])
    a.addresses.add("eth0", [VIP])  # as if it were MASTER: the stop must leave nothing behind
    thread = threading.Thread(target=a.runner.run)
    thread.start()
    a.runner.request_stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert a.runner.stopped.is_set()
    assert not a.holds()
    assert a.links[0].closed


def test_a_link_down_on_one_interface_demotes_the_masters_on_the_others(clock, segment):
    eth1 = VirtualHostConfig(
        vhid=43,
        interface="eth1",
        password=PASSWORD,
        addresses=(VIP2,),
        src_ip=ipaddress.ip_address("198.51.100.11"),
    )
    a = Node(segment, clock, [config(1), eth1])
    start(a)
    run_for(clock, [a], 4)
    eth0_link = next(link for link in a.links if link.interface == "eth0")
    a.runner.post_link_state("eth1", False)
    run_for(clock, [a], 0.01)
    advert = wire.parse(eth0_link.sent[-1].payload)
    # FreeBSD: advskew + 240 capped at 240, and OpenBSD's demote byte.
    assert (advert.advskew, advert.demote) == (240, 240)
    a.runner.post_link_state("eth1", True)
    run_for(clock, [a], 0.01)
    assert wire.parse(eth0_link.sent[-1].payload).advskew == 0


def test_set_demotion_hands_a_master_over_to_its_peer(clock, segment):
    a = Node(segment, clock, [config(1, advskew=0)])
    b = Node(segment, clock, [config(2, advskew=100)])
    start(a, b)
    run_for(clock, [a, b], 4)
    a.runner.set_demotion("maintenance", 200, "maintenance")
    run_for(clock, [a, b], 0.1)
    assert (a.state(), b.state()) == (State.BACKUP, State.MASTER)
    assert a.publisher.published[-1].reason == "maintenance"
    assert a.publisher.published[-1].source == "maintenance"


def test_request_dump_logs_every_host_and_the_drop_counters_from_the_loop(clock, segment, caplog):
    a = Node(segment, clock, [config(1), config(1, vhid=43, addresses=(VIP2,), advskew=100)])
    start(a)
    run_for(clock, [a], 4)
    a.runner.drops["bad_hmac"] += 3
    caplog.set_level(logging.INFO, logger="cluster.carp")
    a.runner.request_dump()  # as the SIGUSR1 handler does: the loop logs, not the handler
    assert "adverts sent" not in caplog.text
    a.runner.step()
    assert "vhid 42 on eth0: MASTER, advbase 1 advskew 0" in caplog.text
    assert "vhid 43 on eth0: MASTER, advbase 1 advskew 100" in caplog.text
    assert "dropped packets: bad_hmac 3" in caplog.text


def test_a_relative_script_runs_from_the_start_directory_as_in_ucarp(
    clock, segment, tmp_path: Path, monkeypatch
):
    # ucarp execl()s its scripts, so `-u up.sh -d down.sh` means ./up.sh, not a PATH search.
    out = tmp_path / "calls"
    for name in ("up", "down"):
        script = tmp_path / f"{name}.sh"
        script.write_text(f'#!/bin/sh\necho "{name} $1 $2" >> {out}\n')
        script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        ["run", "-i", "eth0", "-s", "192.0.2.11", "-v", "42", "-p", "s3cret",
         "-a", "192.0.2.100", "-u", "up.sh", "-d", "down.sh"]
    )  # fmt: skip
    a = Node(segment, clock, configs_from_args(args), hooks=Hooks(*hooks_from_args(args)))
    start(a)
    run_for(clock, [a], 4)
    a.runner.shutdown()  # waits for queued hooks
    assert _lines(out) == ["down eth0 192.0.2.100", "up eth0 192.0.2.100", "down eth0 192.0.2.100"]


def test_a_missing_script_is_one_clear_error_line_not_a_traceback(tmp_path: Path, caplog):
    hooks = Hooks(str(tmp_path / "nowhere.sh"), None)
    hooks.up("eth0", [VIP])
    hooks.close()
    (record,) = [r for r in caplog.records if "nowhere.sh" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "could not run: No such file or directory" in record.getMessage()
    assert record.exc_info is None


def test_ucarps_xparam_is_the_scripts_third_argument(tmp_path: Path):
    out = tmp_path / "calls"
    script = tmp_path / "up.sh"
    script.write_text(f'#!/bin/sh\necho "$# $1 $2 $3" >> {out}\n')
    script.chmod(0o755)
    Hooks(str(script), None, xparam="extra").up("eth0", [VIP])
    hooks = Hooks(str(script), None)
    hooks.up("eth0", [VIP])
    hooks.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(_lines(out)) < 2:
        time.sleep(0.01)
    assert sorted(_lines(out)) == ["2 eth0 192.0.2.100 ", "3 eth0 192.0.2.100 extra"]


def test_what_a_script_prints_goes_into_the_log_not_onto_our_stderr(tmp_path: Path, caplog, capfd):
    # A ucarp downscript's `ip addr del` says "Address not found" at start-up; printed
    # raw on our stderr, it broke --log-format json (one JSON object per line).
    script = tmp_path / "down.sh"
    script.write_text('#!/bin/sh\necho "Error: ipv4: Address not found." >&2\nexit "$3"\n')
    script.chmod(0o755)
    caplog.set_level(logging.INFO, logger="cluster.carp")
    for code in ("0", "2"):
        hooks = Hooks(None, str(script), xparam=code)
        hooks.down("eth0", [VIP])
        hooks.close()
    out, err = capfd.readouterr()
    assert "Address not found" not in out + err
    said, failed = [r for r in caplog.records if getattr(r, "event", None) == "hook"]
    assert said.levelno == logging.INFO
    assert said.getMessage().endswith("eth0 192.0.2.100 0: Error: ipv4: Address not found.")
    assert failed.levelno == logging.WARNING
    assert "exited with 2: Error: ipv4: Address not found." in failed.getMessage()
    assert failed.output == "Error: ipv4: Address not found."


def test_another_clusters_vhid_is_counted_and_said_once_at_info(clock, segment, caplog):
    # Two CARP pairs on one LAN is normal: no warning every 10 s for ever.
    a = Node(segment, clock, [config(1)])
    start(a)
    peer = ipaddress.ip_address("192.0.2.12")
    with caplog.at_level(logging.INFO, logger="cluster.carp"):
        for _ in range(25):
            a.links[0].inject(wire.encode(43, 1, 0, 0, 7, b"theirs", [VIP2]), peer)
            a.links[0].inject(wire.encode(44, 1, 0, 0, 7, b"theirs", [VIP2]), peer)
            run_for(clock, [a], 1.0, dt=0.5)
    assert a.runner.snapshot().drops["wrong_vhid"] == 50
    said = [r for r in caplog.records if "not one of ours" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO, logging.INFO]
    assert "vhid 43 on eth0 (first from 192.0.2.12)" in said[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_drop_without_detail_has_no_empty_parentheses(clock, segment, caplog):
    a = Node(segment, clock, [config(1)])
    start(a)
    good = wire.encode(42, 1, 0, 0, 7, PASSWORD, [VIP])
    a.links[0].inject(good[:6] + b"\0\0" + good[8:], ipaddress.ip_address("192.0.2.12"))
    with caplog.at_level(logging.WARNING, logger="cluster.carp"):
        run_for(clock, [a], 0.01)
    (record,) = [r for r in caplog.records if "bad_checksum" in r.getMessage()]
    assert "bad_checksum; 1 dropped" in record.getMessage()


def test_two_source_addresses_on_one_interface_handle_each_advert_once(clock, segment):
    # Both raw sockets hear every advert of eth0; each used to reach the machines twice.
    vip3 = ipaddress.ip_interface("198.51.100.102/32")
    own_source = VirtualHostConfig(
        vhid=2,
        interface="eth0",
        password=PASSWORD,
        addresses=(vip3,),
        src_ip=ipaddress.ip_address("198.51.100.11"),
    )
    a = Node(segment, clock, [config(1, advskew=100), own_source])
    b = Node(segment, clock, [config(2)])
    start(a, b)
    run_for(clock, [a, b], 10)
    assert len(a.links) == 2
    received = {h.vhid: h.adverts_received for h in a.runner.snapshot().hosts}
    (b_host,) = b.runner.snapshot().hosts
    # b's adverts since it became MASTER (the last one may still be in flight).
    assert b_host.adverts_sent - 1 <= received[42] <= b_host.adverts_sent


# ---- events in the order they happened ------------------------------------------------
PEER = ipaddress.ip_address("192.0.2.10")


def test_a_queued_advert_older_than_an_expired_deadline_is_handled_first(clock, segment):
    # A stalled backup wakes with its master-down deadline passed and the master's
    # advert queued since before it: the advert wins, the live master is not "down".
    b = Node(segment, clock, [config(2, advskew=100)])
    start(b)
    deadline = clock.now + 3 + 100 / 256
    clock.advance(3.5)  # the stall: past the deadline
    b.links[0].inject(wire.encode(42, 1, 0, 0, 7, PASSWORD, [VIP]), PEER, at=deadline - 0.2)
    b.runner.step(max_wait=0)
    assert b.state() == State.BACKUP
    assert b.publisher.published == [b.publisher.published[0]]  # startup only


def test_an_advert_received_after_the_deadline_does_not_undo_the_takeover(clock, segment):
    b = Node(segment, clock, [config(2, advskew=100)])
    start(b)
    deadline = clock.now + 3 + 100 / 256
    clock.advance(3.5)
    b.links[0].inject(wire.encode(42, 1, 200, 0, 7, PASSWORD, [VIP]), PEER, at=deadline + 0.05)
    b.runner.step(max_wait=0)
    # It timed out first, then heard a worse master: it stays MASTER and answers it.
    assert b.state() == State.MASTER
    assert [p.reason for p in b.publisher.published][-1] == "master_down"


def test_a_takeover_sends_every_advert_before_any_address_is_added(clock, segment, monkeypatch):
    configs = [
        config(2, vhid=v, advskew=100, addresses=(ipaddress.ip_interface(f"192.0.2.{v}/32"),))
        for v in range(101, 111)
    ]
    b = Node(segment, clock, configs)
    start(b)
    order: list[str] = []
    real_send, real_add = b.links[0].send, b.addresses.add

    def send(vhid: int, payload: bytes) -> None:
        order.append("advert")
        real_send(vhid, payload)

    def add(interface: str, addresses) -> None:
        order.append("add")
        real_add(interface, addresses)

    monkeypatch.setattr(b.links[0], "send", send)
    monkeypatch.setattr(b.addresses, "add", add)
    run_for(clock, [b], 3.5)
    assert all(b.state(v) == State.MASTER for v in range(101, 111))
    first_add = order.index("add")
    assert order[:first_add] == ["advert"] * 10


def test_an_advert_is_due_an_interval_after_the_last_was_due_not_after_a_late_wake_up(
    clock, segment
):
    a = Node(segment, clock, [config(1, advskew=0)])
    start(a)
    run_for(clock, [a], 3.2)  # MASTER now
    sent = len(a.links[0].sent)
    # Wake 30 ms late for each of ten adverts: without drift they still come once a second.
    for _ in range(10):
        due = a.runner._time_to_next(clock.now)
        assert due is not None
        clock.advance(due + 0.03)
        a.runner.step(max_wait=0)
    assert len(a.links[0].sent) == sent + 10
    assert a.runner._time_to_next(clock.now) == pytest.approx(1 - 0.03, abs=1e-6)


def test_a_virtual_host_retired_everywhere_stops_without_a_bow_out(clock, segment):
    a = Node(segment, clock, [config(1, advskew=0)])
    b = Node(segment, clock, [config(2, advskew=100)])
    start(a, b)
    run_for(clock, [a, b], 4)
    sent = len(a.links[0].sent)
    a.runner.reconfigure([], retired=[("eth0", 42)])
    a.runner.step(max_wait=0)  # a runs nothing now: it is not stepped again
    run_for(clock, [b], 0.2)
    assert not a.holds()
    assert len(a.links[0].sent) == sent  # silent: no bow-out advert
    assert b.state() == State.BACKUP  # it will stop it too when it applies the change


def test_a_virtual_host_removed_from_this_node_only_bows_out(clock, segment):
    a = Node(segment, clock, [config(1, advskew=0)])
    b = Node(segment, clock, [config(2, advskew=100)])
    start(a, b)
    run_for(clock, [a, b], 4)
    a.runner.reconfigure([])
    a.runner.step(max_wait=0)
    run_for(clock, [b], 0.2)
    bow_out = wire.parse(a.links[0].sent[-1].payload)
    assert (bow_out.advbase, bow_out.advskew) == (255, 255)
    assert b.state() == State.MASTER


# ---- demotion: a sum of named sources (DESIGN.md) -------------------------------------
class Observer:
    """A listener on the fake segment: the adverts a node really put on the wire."""

    def __init__(self, segment) -> None:
        self.link = FakeLink("eth0", ipaddress.ip_address("192.0.2.99"), segment)

    def last(self, vhid: int):
        """The newest advert of ``vhid`` heard since the last call, parsed."""
        heard = [wire.parse(p.payload) for p in self.link.inbox]
        self.link.inbox.clear()
        mine = [advert for advert in heard if advert.vhid == vhid]
        assert mine, f"no advert of vhid {vhid} was heard on the segment"
        return mine[-1]


def wire_and_snapshot(node: Node, observer: Observer, vhid: int = 42):
    """(advskew, demote) of the newest advert on the segment, of the host's snapshot,
    and the node's demotion (sources, total) from its RunnerSnapshot."""
    advert = observer.last(vhid)
    snap = node.runner.snapshot()
    host = next(h for h in snap.hosts if h.vhid == vhid)
    return (
        (advert.advskew, advert.demote),
        (host.advertised_advskew, host.demote),
        (snap.demotion, snap.demotion_total),
    )


def test_two_demotion_sources_add_up_and_clearing_one_leaves_the_other(clock, segment):
    a = Node(segment, clock, [config(1, advskew=20)])
    observer = Observer(segment)
    start(a)
    run_for(clock, [a], 4)
    assert a.state() == State.MASTER
    maintenance = DemotionSource("maintenance", 100, "maintenance")
    operator = DemotionSource("operator", 200, "drained by alice")

    a.runner.set_demotion("maintenance", 100, "maintenance")
    run_for(clock, [a], 0.01)  # a MASTER advertises a new demotion at once
    assert wire_and_snapshot(a, observer) == ((120, 100), (120, 100), ((maintenance,), 100))

    a.runner.set_demotion("operator", 200, "drained by alice")
    run_for(clock, [a], 0.01)
    # 20 + 300 capped at 240 (FreeBSD); the demote byte 300 capped at 255 (OpenBSD).
    assert wire_and_snapshot(a, observer) == (
        (240, 255),
        (240, 255),
        ((maintenance, operator), 300),
    )

    a.runner.set_demotion("maintenance", 0)
    run_for(clock, [a], 0.01)
    assert wire_and_snapshot(a, observer) == ((220, 200), (220, 200), ((operator,), 200))

    a.runner.set_demotion("operator", 0)
    run_for(clock, [a], 0.01)
    assert wire_and_snapshot(a, observer) == ((20, 0), (20, 0), ((), 0))


def test_setting_a_source_again_replaces_its_level_and_never_adds_to_itself(clock, segment):
    a = Node(segment, clock, [config(1)])
    observer = Observer(segment)
    start(a)
    run_for(clock, [a], 4)
    a.runner.set_demotion("health:smtp-25", 50, "smtp-25 failing")
    a.runner.set_demotion("health:smtp-25", 30, "smtp-25 slow")
    run_for(clock, [a], 0.01)
    assert wire_and_snapshot(a, observer) == (
        (30, 30),
        (30, 30),
        ((DemotionSource("health:smtp-25", 30, "smtp-25 slow"),), 30),
    )


def eth1_vhost(vhid: int = 43, advskew: int = 0, src: str = "198.51.100.11") -> VirtualHostConfig:
    return VirtualHostConfig(
        vhid=vhid,
        interface="eth1",
        password=PASSWORD,
        addresses=(VIP2,),
        advskew=advskew,
        src_ip=ipaddress.ip_address(src),
    )


def test_a_link_down_and_maintenance_add_up(clock, segment):
    a = Node(segment, clock, [config(1, advskew=10), eth1_vhost()])
    observer = Observer(segment)
    start(a)
    run_for(clock, [a], 4)
    link = DemotionSource("link:eth1", 240, "link eth1 down")
    maintenance = DemotionSource("maintenance", 240, "maintenance")

    a.runner.post_link_state("eth1", False)  # the runner sets link:eth1 itself
    run_for(clock, [a], 0.01)
    assert wire_and_snapshot(a, observer) == ((240, 240), (240, 240), ((link,), 240))

    a.runner.set_demotion("maintenance", 240, "maintenance")
    run_for(clock, [a], 0.01)
    assert wire_and_snapshot(a, observer) == ((240, 255), (240, 255), ((link, maintenance), 480))

    a.runner.post_link_state("eth1", True)  # the link's source goes, maintenance stays
    run_for(clock, [a], 0.01)
    assert wire_and_snapshot(a, observer) == ((240, 240), (240, 240), ((maintenance,), 240))

    a.runner.set_demotion("maintenance", 0)
    run_for(clock, [a], 0.01)
    assert wire_and_snapshot(a, observer) == ((10, 0), (10, 0), ((), 0))


def test_a_master_demoted_by_maintenance_records_reason_and_source(clock, segment):
    a = Node(segment, clock, [config(1, advskew=0)])
    b = Node(segment, clock, [config(2, advskew=100)])
    start(a, b)
    run_for(clock, [a, b], 4)
    a.runner.set_demotion("health:smtp-25", 10, "smtp-25 failing")  # not enough to hand over
    a.runner.set_demotion("maintenance", 240, "maintenance")
    run_for(clock, [a, b], 0.1)
    assert (a.state(), b.state()) == (State.BACKUP, State.MASTER)
    step_down = a.publisher.published[-1]
    assert (step_down.old, step_down.state) == (State.MASTER, State.BACKUP)
    assert (step_down.reason, step_down.source) == (Reason.MAINTENANCE, "maintenance")
    (host,) = a.runner.snapshot().hosts
    assert (host.last_reason, host.last_source) == (Reason.MAINTENANCE, "maintenance")


def test_a_master_demoted_by_a_link_down_elsewhere_records_link_down_and_the_link(clock, segment):
    # a holds vhid 43 on eth1; its eth0 goes down: the eth1 master hands over (FreeBSD
    # demotes every vhost of the node) and says which link caused it.
    a = Node(segment, clock, [config(1), eth1_vhost(advskew=0)])
    b = Node(segment, clock, [eth1_vhost(advskew=100, src="198.51.100.12")])
    start(a, b)
    run_for(clock, [a, b], 4)
    assert (a.state(43), b.state(43)) == (State.MASTER, State.BACKUP)
    a.runner.post_link_state("eth0", False)
    run_for(clock, [a, b], 0.1)
    assert (a.state(43), b.state(43)) == (State.BACKUP, State.MASTER)
    step_down = next(p for p in reversed(a.publisher.published) if p.vhid == 43)
    assert (step_down.old, step_down.state) == (State.MASTER, State.BACKUP)
    assert (step_down.reason, step_down.source) == (Reason.LINK_DOWN, "link:eth0")
    host = next(h for h in a.runner.snapshot().hosts if h.vhid == 43)
    assert (host.last_reason, host.last_source) == (Reason.LINK_DOWN, "link:eth0")
    # The vhost on eth0 itself went to INIT for its own link, not for a demotion.
    own = next(p for p in reversed(a.publisher.published) if p.vhid == 42)
    assert (own.state, own.reason, own.source) == (State.INIT, Reason.LINK_DOWN, "")


# ---- adverts only from members, and no counter twice (hardening) -------------------------
MEMBER = ipaddress.ip_address("192.0.2.12")
STRANGER = ipaddress.ip_address("192.0.2.66")


def guarded(strict: bool = True):
    return config(1, advskew=100, peers=frozenset({MEMBER}), strict_counters=strict)


def advert_from_member(counter: int, advskew: int = 0) -> bytes:
    return wire.encode(42, 1, advskew, 0, counter, PASSWORD, [VIP])


def test_an_advert_from_a_source_that_is_not_a_member_is_dropped_and_counted(clock, segment):
    a = Node(segment, clock, [guarded()])
    start(a)
    # A replay of the member's own advert from another address: it passes the HMAC.
    a.links[0].inject(advert_from_member(7), STRANGER)
    a.runner.step(max_wait=0)
    assert a.runner.drops["not_member"] == 1
    assert a.runner.snapshot().hosts[0].adverts_received == 0


def test_a_counter_already_accepted_from_a_member_is_a_replay(clock, segment):
    a = Node(segment, clock, [guarded()])
    start(a)
    for counter in (100, 101, 101, 50):
        a.links[0].inject(advert_from_member(counter), MEMBER)
    a.runner.step(max_wait=0)
    assert a.runner.drops["replay"] == 2
    assert a.runner.snapshot().hosts[0].adverts_received == 2


def test_a_replayed_bow_out_cannot_take_the_vip_from_a_live_master(clock, segment):
    # A sniffed advert rewritten into a bow-out keeps its counter (the HMAC covers it).
    a = Node(segment, clock, [guarded()])
    start(a)
    a.links[0].inject(advert_from_member(100), MEMBER)
    a.links[0].inject(wire.encode(42, 255, 255, 0, 100, PASSWORD, [VIP]), MEMBER)
    run_for(clock, [a], 1)
    assert a.state() == State.BACKUP
    assert a.runner.drops["replay"] == 1


def test_a_member_that_restarts_is_accepted_at_its_first_advert(clock, segment):
    a = Node(segment, clock, [guarded()])
    start(a)
    a.links[0].inject(advert_from_member(counter_start(1_700_000_000.0)), MEMBER)
    # The member restarts ten seconds later: its counter starts from the clock again.
    a.links[0].inject(advert_from_member(counter_start(1_700_000_010.0)), MEMBER)
    a.runner.step(max_wait=0)
    assert a.runner.drops["replay"] == 0
    assert a.runner.snapshot().hosts[0].adverts_received == 2


def test_without_strict_counters_random_ones_pass_and_a_repeat_does_not(clock, segment):
    # ucarp sends a random counter in every advert until it hears a peer.
    a = Node(segment, clock, [guarded(strict=False)])
    start(a)
    for counter in (9_000, 12, 77_777, 12):
        a.links[0].inject(advert_from_member(counter), MEMBER)
    a.runner.step(max_wait=0)
    assert a.runner.drops["replay"] == 1
    assert a.runner.snapshot().hosts[0].adverts_received == 3


def test_without_peers_every_source_and_counter_is_taken_as_ucarp_and_the_bsds_do(clock, segment):
    a = Node(segment, clock, [config(1, advskew=100)])
    start(a)
    for counter in (5, 5):
        a.links[0].inject(advert_from_member(counter), STRANGER)
    a.runner.step(max_wait=0)
    assert a.runner.snapshot().hosts[0].adverts_received == 2


def test_a_deadline_that_falls_due_while_a_step_works_waits_for_the_next_read(
    clock, segment, monkeypatch
):
    # A node busy with hundreds of VIPs: its step takes long, and an advert received
    # meanwhile, before a master-down deadline, is still on the socket when the step
    # ends. The deadline must not fire before that advert is read.
    b = Node(segment, clock, [config(2, advskew=100)])
    start(b)
    deadline = clock.now + 3 + 100 / 256
    clock.advance(3.3)  # just before the deadline
    link = b.links[0]
    real_receive = link.receive
    arrived = [False]

    def slow_receive():
        packet = real_receive()
        if packet is None and not arrived[0]:
            arrived[0] = True
            clock.advance(0.5)  # the read and the work take half a second...
            # ...and the master's advert arrives 50 ms before the deadline, unread yet.
            link.inject(wire.encode(42, 1, 0, 0, 7, PASSWORD, [VIP]), PEER, at=deadline - 0.05)
        return packet

    monkeypatch.setattr(link, "receive", slow_receive)
    b.runner.step(max_wait=0)
    assert b.state() == State.BACKUP  # not fired past what was read
    b.runner.step(max_wait=0)
    assert b.state() == State.BACKUP  # the advert re-armed the timer
    assert b.runner.snapshot().hosts[0].adverts_received == 1


def test_a_takeover_of_many_vips_adds_them_in_one_call_and_announces_them_in_one_burst(
    clock, segment, monkeypatch
):
    vips = [ipaddress.ip_interface(f"192.0.2.{v}/32") for v in range(101, 111)]
    b = Node(segment, clock, [config(2, vhid=v, advskew=100, addresses=(a,)) for v, a in
                              zip(range(101, 111), vips, strict=True)])  # fmt: skip
    start(b)
    calls: list[tuple[str, list[ipaddress.IPv4Interface]]] = []
    real_add, real_announce = b.addresses.add, b.gratuitous.announce

    def add(interface: str, addresses) -> None:
        calls.append(("add", list(addresses)))
        real_add(interface, addresses)

    def announce(interface: str, addresses) -> None:
        calls.append(("announce", list(addresses)))
        real_announce(interface, addresses)

    monkeypatch.setattr(b.addresses, "add", add)
    monkeypatch.setattr(b.gratuitous, "announce", announce)
    run_for(clock, [b], 3.5)  # every master-down deadline falls in the same step
    assert all(b.state(v) == State.MASTER for v in range(101, 111))
    assert calls == [("add", vips), ("announce", vips)]
    assert b.addresses.list("eth0") == set(vips)


def test_transition_logs_wait_while_more_deadlines_fall_due_then_all_come_out(
    clock, segment, caplog
):
    # Two vhosts whose master-down deadlines are 2 ms apart (their advskews differ by
    # half a 1/256 s): the first takeover's log line waits for the second takeover.
    first = config(2, vhid=1, advskew=100, addresses=(VIP,))
    second = config(2, vhid=2, advskew=101, addresses=(VIP2,))
    b = Node(segment, clock, [first, second])
    caplog.set_level(logging.INFO, logger="cluster.carp")
    start(b)
    clock.advance(3 + 100 / 256)
    b.runner.step()
    assert b.state(1) == State.MASTER
    assert b.holds(VIP)
    assert b.state(2) == State.BACKUP
    took_over = [r for r in caplog.records if "-> MASTER" in r.getMessage()]
    assert took_over == []  # vhid 2 is due within 10 ms: its takeover comes first
    assert [p.state for p in b.publisher.published if p.vhid == 1] == [State.BACKUP]
    clock.advance(1 / 256)
    b.runner.step()
    assert b.state(2) == State.MASTER
    took_over = [r.getMessage() for r in caplog.records if "-> MASTER" in r.getMessage()]
    assert len(took_over) == 2
    assert took_over[0].startswith("vhid 1 ")  # in the order they happened
    assert [p.state for p in b.publisher.published if p.vhid == 1] == [State.BACKUP, State.MASTER]


def test_transition_logs_wait_no_longer_than_their_limit_under_a_stream_of_deadlines(
    clock, segment, caplog
):
    from cluster.carp.runner import EFFECTS_MAX_DELAY

    # 80 vhosts whose deadlines fall 1/256 s (3.9 ms) apart, over 0.3 s: always another
    # one due soon.
    configs = [
        config(2, vhid=v, advskew=100 + v, addresses=(ipaddress.ip_interface(f"192.0.2.{v}/32"),))
        for v in range(1, 81)
    ]
    b = Node(segment, clock, configs)
    caplog.set_level(logging.INFO, logger="cluster.carp")
    start(b)
    clock.advance(3 + 101 / 256)
    began = clock.now
    b.runner.step()
    assert b.state(1) == State.MASTER
    while not [r for r in caplog.records if "vhid 1 on eth0: BACKUP -> MASTER" in r.getMessage()]:
        clock.advance(1 / 256)
        b.runner.step()
    assert clock.now - began <= EFFECTS_MAX_DELAY + 1 / 256
    assert b.state(80) == State.BACKUP  # the stream of takeovers had not ended
