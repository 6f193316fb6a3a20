"""The node's health checks (cluster/node/health.py): each probe against real
listeners on the loopback, the runner's thread, and the engine it demotes.
No root needed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from cluster import statekeys
from cluster.carp.types import DemotionSource
from cluster.checks import CheckSpec, source_name
from cluster.lab.lan import wait_until
from cluster.node import apply
from cluster.node.health import HealthRunner, run_probe
from tests.node.test_engine import ConfigSource, heartbeat, hosts, make_engine, vhost

__all__ = ["make_engine"]  # the engine fixture, shared with test_engine

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Listener:
    """An asyncio TCP server on 127.0.0.1 in a thread of its own (port chosen by the
    kernel), running ``handler`` per connection; ``close`` stops it."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        async def serve() -> None:
            server = await asyncio.start_server(self.handler, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self.server = server
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(5)
        ready.wait(5)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(handler: Handler, tls: ssl.SSLContext | None = None) -> Listener:
        listener = Listener(handler, tls)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


def smtp_server(
    banner: str = "220 node1 ESMTP", ehlo: str = "250 node1", tls: ssl.SSLContext | None = None
) -> Handler:
    """A small SMTP listener: the banner, EHLO (multi-line 250), STARTTLS, QUIT."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(f"{banner}\r\n".encode())
            await writer.drain()
            while line := await reader.readline():
                verb = line.decode().strip().split(" ")[0].upper()
                if verb == "EHLO":
                    extra = "250-STARTTLS\r\n" if tls is not None else ""
                    reply = f"250-node1 hello\r\n{extra}{ehlo}"
                elif verb == "STARTTLS" and tls is not None:
                    writer.write(b"220 go ahead\r\n")
                    await writer.drain()
                    await writer.start_tls(tls)
                    continue
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    reply = "502 no"
                writer.write(f"{reply}\r\n".encode())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return session


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)  # accepts, says nothing (a hung mail service)
    writer.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe(spec: CheckSpec) -> tuple[bool, str]:
    return asyncio.run(run_probe(spec))


def smtp(port: int, **kw: object) -> CheckSpec:
    values: dict[str, object] = {"timeout_ms": 2000, **kw}
    return CheckSpec("smtp-25", "smtp", host="127.0.0.1", port=port, **values)  # type: ignore[arg-type]


# ---- the probes ------------------------------------------------------------------------
def test_smtp_passes_on_a_220_banner_and_a_250_to_ehlo(listen):
    server = listen(smtp_server())
    assert probe(smtp(server.port)) == (True, "220 node1 ESMTP")


def test_smtp_fails_on_a_554_banner_with_the_banner_in_the_message(listen):
    server = listen(smtp_server(banner="554 node1 too busy"))
    assert probe(smtp(server.port)) == (False, "banner 554 node1 too busy")


def test_smtp_fails_when_ehlo_is_refused(listen):
    server = listen(smtp_server(ehlo="421 shutting down"))
    assert probe(smtp(server.port)) == (False, "EHLO answered 421 shutting down")


def test_a_closed_port_is_connection_refused():
    assert probe(smtp(closed_port())) == (False, "connection refused")
    tcp = CheckSpec("tcp", "tcp", host="127.0.0.1", port=closed_port())
    assert probe(tcp) == (False, "connection refused")


def test_a_service_that_never_answers_is_a_timeout_in_its_milliseconds(listen):
    server = listen(silent)
    began = time.monotonic()
    assert probe(smtp(server.port, timeout_ms=300)) == (False, "timeout after 300 ms")
    assert time.monotonic() - began < 2.0


def test_a_check_without_a_target_fails_saying_so():
    assert probe(CheckSpec("smtp-25", "smtp")) == (
        False,
        "no target address (the node has no address)",
    )
    assert probe(CheckSpec("tcp", "tcp", host="127.0.0.1")) == (
        False,
        "no port to connect to (port 0)",
    )
    assert probe(CheckSpec("odd", "gopher", host="127.0.0.1")) == (False, "unknown kind 'gopher'")


@pytest.fixture
def tls_server_context(tmp_path: Path) -> ssl.SSLContext:
    """A self-signed certificate for 'mx.example.org' (not the address the check uses)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=mx.example.org", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_smtp_with_starttls_passes_against_a_self_signed_certificate(listen, tls_server_context):
    server = listen(smtp_server(tls=tls_server_context))
    assert probe(smtp(server.port, starttls=True)) == (True, "220 node1 ESMTP")


def test_smtp_with_starttls_fails_when_the_server_cannot_do_it(listen):
    server = listen(smtp_server())
    assert probe(smtp(server.port, starttls=True)) == (False, "STARTTLS answered 502 no")


def http_server(status: str) -> Handler:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass
        writer.write(f"HTTP/1.0 {status}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    return session


def test_http_passes_on_the_expected_status_and_names_another(listen):
    ok = listen(http_server("200 OK"))
    down = listen(http_server("503 Service Unavailable"))
    spec = CheckSpec("web", "http", host="127.0.0.1", path="/health")
    assert probe(CheckSpec(**{**spec.to_data(), "port": ok.port})) == (True, "HTTP 200")
    assert probe(CheckSpec(**{**spec.to_data(), "port": down.port})) == (False, "HTTP 503")
    expect_503 = CheckSpec(**{**spec.to_data(), "port": down.port, "expect_status": 503})
    assert probe(expect_503) == (True, "HTTP 503")


def test_disk_compares_the_free_percentage_and_reports_a_missing_path(tmp_path):
    free = 100 * os.statvfs(tmp_path).f_bavail / os.statvfs(tmp_path).f_blocks
    ok, message = probe(CheckSpec("disk", "disk", path=str(tmp_path), min_free_percent=0))
    assert ok
    assert message.endswith(f"% free on {tmp_path}")
    full = CheckSpec("disk", "disk", path=str(tmp_path), min_free_percent=101)
    assert probe(full) == (False, f"{free:.0f}% free on {tmp_path}, below 101%")
    missing = CheckSpec("disk", "disk", path=str(tmp_path / "nope"))
    assert probe(missing) == (False, f"cannot read {tmp_path / 'nope'}: No such file or directory")


def test_a_command_passes_on_exit_0_and_fails_with_its_status_and_last_line(tmp_path):
    assert probe(CheckSpec("q", "command", argv=("true",))) == (True, "exit 0")
    script = "echo checking; echo queue 5000 above 1000; exit 2"
    assert probe(CheckSpec("q", "command", argv=("sh", "-c", script))) == (
        False,
        "exit 2: queue 5000 above 1000",
    )
    # No shell: a metacharacter is an argument like any other.
    assert probe(CheckSpec("q", "command", argv=("echo", "a;", "false"))) == (True, "a; false")


def test_a_command_that_is_not_there_fails_saying_so():
    spec = CheckSpec("q", "command", argv=("/nonexistent/queue-check",))
    assert probe(spec) == (
        False,
        "cannot run /nonexistent/queue-check: No such file or directory",
    )
    assert probe(CheckSpec("q", "command")) == (False, "no program given")


def test_a_command_past_its_timeout_is_killed_and_is_a_failure(tmp_path):
    pidfile = tmp_path / "pid"
    argv = ("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30")
    began = time.monotonic()
    assert probe(CheckSpec("q", "command", argv=argv, timeout_ms=500)) == (
        False,
        "timeout after 500 ms",
    )
    assert time.monotonic() - began < 3.0
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists(), "the timed-out command is still running"


# ---- the runner ------------------------------------------------------------------------
class Demotions:
    """What the runner was told, in order (a stand-in for Runner.set_demotion)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []
        self.lock = threading.Lock()

    def __call__(self, source: str, level: int, reason: str) -> None:
        with self.lock:
            self.calls.append((source, level, reason))

    def last(self, source: str) -> tuple[int, str] | None:
        with self.lock:
            found = [(lv, r) for s, lv, r in self.calls if s == source]
        return found[-1] if found else None


class Scripted:
    """A probe that answers from a switch the test flips (no network)."""

    def __init__(self) -> None:
        self.ok = False
        self.runs = 0

    async def __call__(self, spec: CheckSpec) -> tuple[bool, str]:
        self.runs += 1
        return (True, "220 node1") if self.ok else (False, "connection refused")


@pytest.fixture
def runner() -> Iterator[Callable[..., tuple[HealthRunner, Demotions]]]:
    made: list[HealthRunner] = []

    def make(**kw: object) -> tuple[HealthRunner, Demotions]:
        demotions = Demotions()
        health = HealthRunner(demotions, **kw)  # type: ignore[arg-type]
        health.start()
        made.append(health)
        return health, demotions

    yield make
    for health in made:
        health.stop()


FAST = CheckSpec("smtp-25", "smtp", interval_ms=100, rise=2, fall=3)


def test_at_boot_the_demotion_is_set_before_configure_returns_and_lifts_on_a_pass(runner):
    probe = Scripted()
    health, demotions = runner(probe=probe)
    health.configure((FAST,), "192.0.2.11")
    # Set synchronously: the engine starts its virtual hosts only after this.
    assert demotions.calls[0] == (
        source_name("smtp-25"),
        240,
        "health smtp-25 not checked yet (boot)",
    )
    wait_until(lambda: probe.runs >= 1, 5, what="a first probe")
    probe.ok = True
    wait_until(lambda: demotions.last("health:smtp-25") == (0, ""), 5, what="the gate to lift")
    (status,) = health.statuses()
    assert (status.passing, status.gating, status.demotion) == (True, False, 0)


def test_fall_failures_demote_rise_passes_clear_and_nothing_repeats_meanwhile(runner):
    probe = Scripted()
    probe.ok = True
    health, demotions = runner(probe=probe)
    health.configure((), "")  # the boot had no check: the one added later does not gate
    health.configure((FAST,), "192.0.2.11")
    wait_until(lambda: probe.runs >= 2, 5, what="passing probes")
    assert demotions.calls == []
    probe.ok = False
    wait_until(lambda: demotions.calls, 5, what="the demotion")
    assert demotions.calls == [
        ("health:smtp-25", 240, "health smtp-25 failing 3× (connection refused)")
    ]
    runs = probe.runs
    wait_until(lambda: probe.runs >= runs + 3, 5, what="more failures")
    assert len(demotions.calls) == 1  # still failing: the runner is not told again
    probe.ok = True
    wait_until(lambda: len(demotions.calls) == 2, 5, what="the demotion to clear")
    assert demotions.calls[-1] == ("health:smtp-25", 0, "")
    (status,) = health.statuses()
    assert status.passing is True
    assert status.count >= 2


def test_a_removed_check_clears_its_demotion_and_stops_probing(runner):
    probe = Scripted()
    health, demotions = runner(probe=probe)
    health.configure((FAST,), "192.0.2.11")
    health.configure((), "192.0.2.11")
    assert demotions.calls[-1] == ("health:smtp-25", 0, "")
    time.sleep(0.2)  # let a probe that was under way finish
    runs = probe.runs
    time.sleep(0.5)
    assert probe.runs == runs
    assert health.statuses() == ()


def test_a_hung_probe_never_holds_up_configure_or_the_status(runner):
    async def hangs(spec: CheckSpec) -> tuple[bool, str]:
        await asyncio.sleep(60)
        return True, "never"

    health, _ = runner(probe=hangs)
    began = time.monotonic()
    health.configure((FAST,), "192.0.2.11")
    health.statuses()
    health.configure((FAST, CheckSpec("disk", "disk")), "192.0.2.11")
    assert time.monotonic() - began < 0.5
    began = time.monotonic()
    health.stop()
    assert time.monotonic() - began < 2.0


# ---- the engine --------------------------------------------------------------------------
def config(*checks: CheckSpec, version: str, maintenance: bool = False) -> apply.NodeConfig:
    return apply.NodeConfig(
        "node1",
        (vhost(42, advskew=20),),
        maintenance,
        version,
        checks=checks,
        address="127.0.0.1",
    )


def test_a_failing_check_demotes_the_engine_and_shows_in_the_heartbeat(
    make_engine, redis_url, listen
):
    port = closed_port()
    check = CheckSpec("smtp-25", "smtp", port=port, interval_ms=100, timeout_ms=500, fall=2,
                      rise=2)  # fmt: skip
    source = ConfigSource(config(check, version="v1"))
    engine = make_engine(source)
    engine.start()
    reason = "health smtp-25 failing 2× (connection refused)"
    wait_until(
        lambda: engine.runner.snapshot().demotion
        == (DemotionSource("health:smtp-25", 240, reason),),
        10,
        what="the check's demotion on the runner",
    )  # fmt: skip
    wait_until(lambda: hosts(engine)[42].advertised_advskew == 240, 5, what="advskew 240")

    def beat_check() -> statekeys.Heartbeat | None:
        beat = heartbeat(redis_url)
        return beat if beat is not None and beat.checks else None

    beat = wait_until(beat_check, 5, what="the check in the heartbeat")
    assert beat is not None
    (status,) = beat.checks
    assert (status.name, status.passing, status.message) == ("smtp-25", False, "connection refused")
    assert status.demotion == 240
    # Maintenance too: both sources, neither erasing the other.
    source.config = config(check, version="v2", maintenance=True)
    engine.converge()
    wait_until(
        lambda: (
            {d.source for d in engine.runner.snapshot().demotion}
            == {"health:smtp-25", "maintenance"}
        ),
        5,
        what="both sources",
    )
    # The check now reaches a mail service: rise passes clear its source alone.
    server = listen(smtp_server())
    check_up = CheckSpec(**{**check.to_data(), "port": server.port})
    source.config = config(check_up, version="v3", maintenance=True)
    engine.converge()
    wait_until(
        lambda: [d.source for d in engine.runner.snapshot().demotion] == ["maintenance"],
        10,
        what="the check's source to clear, maintenance to stay",
    )


def test_the_local_copy_keeps_the_checks_and_reads_the_older_format(tmp_path):
    import json

    from cluster import crypto

    store = apply.LocalConfigStore.for_node(tmp_path, "node1")
    saved = config(FAST, CheckSpec("q", "command", argv=("queue-size", "--max", "1000")),
                   version="v1")  # fmt: skip
    store.save(saved)
    assert store.load() == saved
    # A format-2 file (before health checks) is still read: no checks, no address.
    body = json.loads(store.path.read_text())
    data = json.loads(crypto.decrypt(body["token"]))
    del data["checks"], data["address"]
    store.path.write_text(json.dumps({"format": 2, "token": crypto.encrypt(json.dumps(data))}))
    old = store.load()
    assert old is not None
    assert (old.checks, old.address, old.vhosts) == ((), "", saved.vhosts)


def test_the_version_changes_with_a_check_and_not_with_nothing():
    from cluster import services

    base = services.DesiredNode("node1", "192.0.2.11", False)
    with_check = services.DesiredNode("node1", "192.0.2.11", False, checks=(FAST,))
    edited = services.DesiredNode(
        "node1", "192.0.2.11", False, checks=(CheckSpec(**{**FAST.to_data(), "fall": 4}),)
    )
    versions = {apply.config_version(n) for n in (base, with_check, edited)}
    assert len(versions) == 3
    assert apply.config_version(with_check) == apply.config_version(
        services.DesiredNode("node1", "192.0.2.11", False, checks=(FAST,))
    )
    assert apply.node_config(with_check).checks == (FAST,)
    assert apply.node_config(with_check).address == "192.0.2.11"


def test_real_probes_run_from_the_runners_own_thread_commands_included(runner, tmp_path):
    flag = tmp_path / "queue-ok"
    # The operator's escape hatch: a program whose exit status says it all.
    check = CheckSpec("queue", "command", argv=("test", "-e", str(flag)), interval_ms=100,
                      timeout_ms=1000, fall=1, rise=1)  # fmt: skip
    health, demotions = runner()
    health.configure((), "")
    health.configure((check,), "127.0.0.1")
    wait_until(lambda: demotions.last("health:queue") == (240, "health queue failing 1× (exit 1)"),
               5, what="the command's failure")  # fmt: skip
    flag.touch()
    wait_until(lambda: demotions.last("health:queue") == (0, ""), 5, what="the command's pass")
    (status,) = health.statuses()
    assert (status.kind, status.passing, status.message) == ("command", True, "exit 0")
