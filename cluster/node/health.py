"""The node's health checks, run off the protocol loop (DESIGN.md, node host "health").

`HealthRunner` owns one thread, ``carp-health``, with an asyncio loop of its own;
each check is one task on it that probes, feeds the result to its pure
`cluster.health.CheckTracker`, and sleeps until its next interval. When a
check's demotion changes, the runner is told through ``set_demotion`` (the
`Runner.set_demotion` of the engine: a queue put and an eventfd write, safe
from any thread, as the engine's maintenance source uses it). So the protocol
loop never runs a probe, never waits for one, and hears of a check only when
its demotion changes, not at every result.

The built-in kinds never fork: smtp, tcp and http are asyncio streams, disk is
one ``os.statvfs`` (in the loop's executor, so that a hung file system costs a
thread, not the loop). Only ``command`` starts a process, without a shell,
killed at its timeout. Every probe has a timeout (``timeout after 2000 ms``),
and a probe that cannot even run (no target, an unknown host, a program that
is not there) is a failure with its cause: nothing passes silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future

from cluster.checks import CheckSpec, CheckStatus, source_name
from cluster.health import CheckTracker, reconcile, short, with_target

log = logging.getLogger("cluster.node")

DEFAULT_PORTS = {"smtp": 25, "http": 80}
MIN_INTERVAL_MS = 100  # a check never probes more often than this, whatever it says
READ_LIMIT = 4096  # bytes of one reply line a probe reads at most
EHLO_NAME = socket.gethostname() or "localhost"

SetDemotion = Callable[[str, int, str], None]
Result = tuple[bool, str]


class ProbeFailed(Exception):
    """A probe's failure, in the words the console shows."""


# ---- the probes ----------------------------------------------------------------------
def target(spec: CheckSpec) -> tuple[str, int]:
    """The host and port a network check connects to (raises ProbeFailed)."""
    if not spec.host:
        raise ProbeFailed("no target address (the node has no address)")
    port = spec.port or DEFAULT_PORTS.get(spec.kind, 0)
    if not 0 < port < 65536:
        raise ProbeFailed(f"no port to connect to (port {spec.port})")
    return spec.host, port


def _connect_error(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {exc.args[-1] if exc.args else 'the host'}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect: {exc.strerror or exc}"


async def _open(spec: CheckSpec) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = target(spec)
    try:
        return await asyncio.open_connection(host, port, limit=READ_LIMIT)
    except socket.gaierror as exc:
        raise ProbeFailed(f"cannot resolve {host}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise ProbeFailed(_connect_error(exc)) from None


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def _reply(reader: asyncio.StreamReader, what: str) -> tuple[int, str]:
    """One SMTP reply (RFC 5321 4.2: ``250-`` lines continue, ``250 `` ends it): its
    code and its last line."""
    while True:
        try:
            raw = await reader.readline()
        except (ValueError, asyncio.LimitOverrunError):
            raise ProbeFailed(f"{what}: reply line too long") from None
        except OSError as exc:
            raise ProbeFailed(f"{what}: {exc.strerror or exc}") from None
        if not raw:
            raise ProbeFailed(f"{what}: connection closed")
        line = raw.decode("latin-1").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise ProbeFailed(f"{what}: not SMTP: {line[:60]!r}")
        if line[3:4] != "-":
            return int(line[:3]), line


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str, want: int, what: str
) -> str:
    writer.write(f"{line}\r\n".encode())
    await writer.drain()
    code, text = await _reply(reader, what)
    if code != want:
        raise ProbeFailed(f"{what} answered {text}")
    return text


def _unverified_tls() -> ssl.SSLContext:
    """STARTTLS is checked with an unverified context: the check asks whether the
    service can do TLS at all. It connects to the node's own address, which no
    certificate names (the certificate names the MX host), and SMTP between MTAs is
    opportunistic, unverified TLS by default (RFC 3207, RFC 7435): verifying here
    would demote a healthy node for a name mismatch no client ever sees."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def probe_smtp(spec: CheckSpec) -> str:
    """Connect, expect a 220 banner, EHLO -> 250 (STARTTLS and EHLO again), QUIT."""
    reader, writer = await _open(spec)
    try:
        code, banner = await _reply(reader, "banner")
        if code != 220:
            raise ProbeFailed(f"banner {banner}")
        await _command(reader, writer, f"EHLO {EHLO_NAME}", 250, "EHLO")
        if spec.starttls:
            await _command(reader, writer, "STARTTLS", 220, "STARTTLS")
            try:
                await writer.start_tls(_unverified_tls(), server_hostname=None)
            except (ssl.SSLError, OSError) as exc:
                raise ProbeFailed(f"TLS handshake failed: {exc}") from None
            await _command(reader, writer, f"EHLO {EHLO_NAME}", 250, "EHLO after STARTTLS")
        with contextlib.suppress(ProbeFailed, OSError):
            await _command(reader, writer, "QUIT", 221, "QUIT")
        return banner
    finally:
        await _close(writer)


async def probe_tcp(spec: CheckSpec) -> str:
    host, port = target(spec)
    _, writer = await _open(spec)
    await _close(writer)
    return f"connected to {host} port {port}"


async def probe_http(spec: CheckSpec) -> str:
    """GET the path (HTTP/1.0, no keep-alive); pass when the status is the expected one."""
    host, port = target(spec)
    path = spec.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    reader, writer = await _open(spec)
    try:
        host_header = f"[{host}]" if ":" in host else host
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: {host_header}:{port}\r\n"
            "User-Agent: appliance-health-check\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        await writer.drain()
        try:
            line = (await reader.readline()).decode("latin-1").strip()
        except (ValueError, asyncio.LimitOverrunError):
            raise ProbeFailed("status line too long") from None
        except OSError as exc:
            raise ProbeFailed(exc.strerror or str(exc)) from None
        words = line.split()
        if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
            raise ProbeFailed(f"not HTTP: {line[:60]!r}" if line else "connection closed")
        if int(words[1]) != spec.expect_status:
            raise ProbeFailed(f"HTTP {words[1]}")
        return f"HTTP {words[1]}"
    finally:
        await _close(writer)


def free_percent(path: str) -> float:
    """Free space on the file system of ``path`` as unprivileged users see it (df's Avail)."""
    fs = os.statvfs(path)
    if fs.f_blocks == 0:
        raise ProbeFailed(f"{path}: the file system reports no size")
    return 100.0 * fs.f_bavail / fs.f_blocks


async def probe_disk(spec: CheckSpec) -> str:
    path = spec.path or "/"
    try:
        free = await asyncio.get_running_loop().run_in_executor(None, free_percent, path)
    except OSError as exc:
        raise ProbeFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    if free < spec.min_free_percent:
        raise ProbeFailed(f"{free:.0f}% free on {path}, below {spec.min_free_percent}%")
    return f"{free:.0f}% free on {path}"


async def probe_command(spec: CheckSpec) -> str:
    """Run argv without a shell; exit 0 passes. Killed when its timeout cancels it."""
    if not spec.argv:
        raise ProbeFailed("no program given")
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own group: a kill reaches what it started
        )
    except OSError as exc:
        raise ProbeFailed(f"cannot run {spec.argv[0]}: {exc.strerror or exc}") from None
    try:
        output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled by the timeout
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
    lines = output.decode("utf-8", "replace").strip().splitlines()
    last = lines[-1] if lines else ""
    if proc.returncode != 0:
        raise ProbeFailed(f"exit {proc.returncode}" + (f": {last}" if last else ""))
    return last or "exit 0"


PROBES: dict[str, Callable[[CheckSpec], Awaitable[str]]] = {
    "smtp": probe_smtp,
    "tcp": probe_tcp,
    "http": probe_http,
    "disk": probe_disk,
    "command": probe_command,
}


async def run_probe(spec: CheckSpec) -> Result:
    """One probe of ``spec`` with its timeout: (passed, message). Never raises."""
    probe = PROBES.get(spec.kind)
    if probe is None:
        return False, f"unknown kind {spec.kind!r}"
    timeout = max(1, spec.timeout_ms)
    try:
        message = await asyncio.wait_for(probe(spec), timeout / 1000)
    except TimeoutError:
        return False, f"timeout after {timeout} ms"
    except ProbeFailed as exc:
        return False, short(str(exc))
    except Exception as exc:  # a probe's own bug must show as a failure, not pass
        log.exception("health check %s: the probe failed unexpectedly", spec.name)
        return False, short(f"probe error: {exc}")
    return True, short(message)


# ---- the runner ----------------------------------------------------------------------
class HealthRunner:
    """The node's checks on an asyncio loop in a thread of their own.

    ``configure`` (any thread) hands it the node's checks and address; ``statuses``
    (any thread) is what the heartbeat reports. The first ``configure`` after
    ``start`` is the node's boot: its checks gate (cluster/health.py), and their
    demotions are set before ``configure`` returns, so that the engine can set
    them before it starts the virtual hosts of the same configuration.
    """

    def __init__(
        self,
        set_demotion: SetDemotion,
        *,
        clock: Callable[[], float] = time.time,
        probe: Callable[[CheckSpec], Awaitable[Result]] = run_probe,
    ) -> None:
        self._set_demotion = set_demotion
        self._clock = clock
        self._probe = probe
        self._lock = threading.Lock()
        self._trackers: dict[str, CheckTracker] = {}
        self._sent: dict[str, tuple[int, str]] = {}  # what the runner was told, per check
        self._booted = False
        self._specs: dict[str, CheckSpec] = {}  # with their target filled in
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: dict[str, tuple[CheckSpec, asyncio.Task[None]]] = {}

    # -- any thread ---------------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="carp-health", daemon=True)
        self._thread.start()
        ready.wait()
        self._call(self._sync_tasks)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every probe (a running command is killed) and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._cancel_all(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = None

    def configure(self, checks: tuple[CheckSpec, ...], address: str) -> None:
        """Run ``checks`` (targets with an empty host get ``address``) from now on."""
        specs = {c.name: with_target(c, address) for c in checks}
        with self._lock:
            boot = not self._booted
            self._booted = True
            gone = set(self._trackers) - set(specs)
            self._trackers = reconcile(self._trackers, tuple(specs.values()), boot=boot)
            self._specs = specs
            for name in gone:
                self._emit(name, (0, ""))
            for name, tracker in self._trackers.items():
                self._emit(name, tracker.demotion())
        if gone or specs:
            log.info(
                "health checks: %s",
                ", ".join(f"{s.kind} {n}" for n, s in sorted(specs.items())) or "none",
            )
        self._call(self._sync_tasks)

    def statuses(self) -> tuple[CheckStatus, ...]:
        with self._lock:
            return tuple(self._trackers[n].status() for n in sorted(self._trackers))

    # -- inside ---------------------------------------------------------------------------
    def _emit(self, name: str, demotion: tuple[int, str]) -> None:
        """Tell the runner a check's demotion when it changed (under ``_lock``, so
        that two threads never send one check's changes out of order)."""
        if self._sent.get(name, (0, "")) == demotion:
            return
        if demotion[0]:
            self._sent[name] = demotion
        else:
            self._sent.pop(name, None)
        log.info(
            "health check %s: %s",
            name,
            f"demotes the node by {demotion[0]}: {demotion[1]}" if demotion[0] else "no demotion",
            extra={"event": "health", "check": name, "level": demotion[0]},
        )
        self._set_demotion(source_name(name), *demotion)

    def _call(self, fn: Callable[[], None]) -> Future[None]:
        """Run ``fn`` on the loop (when it runs); a Future of its end."""
        done: Future[None] = Future()
        loop = self._loop
        if loop is None or loop.is_closed():
            done.set_result(None)
            return done

        def run() -> None:
            try:
                fn()
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done

    def _sync_tasks(self) -> None:
        """On the loop: one task per check, restarted when its settings changed."""
        with self._lock:
            specs = dict(self._specs)
        for name, (spec, task) in list(self._tasks.items()):
            if specs.get(name) != spec:
                task.cancel()
                del self._tasks[name]
        for name, spec in specs.items():
            if name not in self._tasks:
                task = asyncio.get_running_loop().create_task(self._run_check(spec))
                self._tasks[name] = (spec, task)

    async def _cancel_all(self) -> None:
        """Cancel every check and wait for each to end (a command is killed and reaped)."""
        tasks = [task for _, task in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_check(self, spec: CheckSpec) -> None:
        loop = asyncio.get_running_loop()
        interval = max(MIN_INTERVAL_MS, spec.interval_ms) / 1000
        next_at = loop.time()
        me = asyncio.current_task()
        while True:
            ok, message = await self._probe(spec)
            if self._tasks.get(spec.name, (spec, None))[1] is not me:
                # Replaced or stopped. Python 3.11's wait_for can swallow a cancel that
                # arrives as the probe ends (gh-86296): leave on our own then.
                return
            with self._lock:
                tracker = self._trackers.get(spec.name)
                if tracker is None or self._specs.get(spec.name) != spec:
                    return  # removed or replaced meanwhile: the new task reports
                tracker.record(ok, message, self._clock())
                self._emit(spec.name, tracker.demotion())
            # Intervals from the start of each probe, as keepalived's: a slow probe
            # does not stretch them; one longer than the interval is not run twice.
            next_at = max(next_at + interval, loop.time())
            await asyncio.sleep(next_at - loop.time())


__all__ = ["DEFAULT_PORTS", "HealthRunner", "ProbeFailed", "free_percent", "run_probe"]
