"""Processes started by the lab, each tracked and ended by its own pid.

Nothing here signals a process group or a name: only the pids this table
started, so a test or the demo can never kill anything it did not start.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

Proc = subprocess.Popen[bytes]


class Processes:
    """Spawns commands (in a namespace or on the host) with a log file each."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.running: dict[int, Proc] = {}
        self.logs: dict[int, Path] = {}

    def spawn(
        self,
        argv: Sequence[str],
        log: Path,
        namespace: str | None = None,
        env: Mapping[str, str] | None = None,
        header: bool = True,
    ) -> Proc:
        """Start ``argv`` (inside ``namespace`` when given), appending to ``log``.

        With ``header``, a ``--- <time> <command>`` line first: a log that several
        runs of one program append to (a restarted worker) shows where each starts.
        """
        full = ["ip", "netns", "exec", namespace, *argv] if namespace else list(argv)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            if header:
                out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(full)}\n".encode())
                out.flush()
            proc = subprocess.Popen(
                full,
                cwd=self.cwd,
                env=dict(env) if env is not None else None,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C on the terminal must not reach it
            )
        # `ip netns exec` execs in place (NOTES.md), so this pid is the program itself.
        self.running[proc.pid] = proc
        self.logs[proc.pid] = log
        return proc

    def send(self, proc: Proc, sig: int) -> None:
        """Signal ``proc`` unless it has been reaped: its pid may belong to another
        process by now (``Popen.send_signal`` polls first and skips a dead one)."""
        proc.send_signal(sig)

    def stop(self, proc: Proc, sig: int = signal.SIGKILL, timeout: float = 10) -> int:
        """Signal one process and reap it (SIGKILL after ``timeout`` s); its exit status."""
        self.send(proc, sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send(proc, signal.SIGKILL)
            return proc.wait(timeout=5)
        finally:
            self.running.pop(proc.pid, None)

    def stop_all(self, procs: Sequence[Proc], sig: int, timeout: float) -> None:
        """Signal every one of ``procs`` at once, then SIGKILL those left after ``timeout`` s."""
        for proc in procs:
            self.send(proc, sig)
        deadline = time.monotonic() + timeout
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            self.stop(proc, signal.SIGKILL, timeout=5)

    def log_text(self, proc: Proc) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def close(self) -> None:
        """SIGKILL everything still tracked."""
        self.stop_all(list(self.running.values()), signal.SIGKILL, timeout=0)
