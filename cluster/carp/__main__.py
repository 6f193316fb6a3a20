"""The standalone daemon and tools: ``python -m cluster.carp run|decode``.

``run`` needs no Django: it wires the real ports (raw sockets, netlink,
AF_PACKET announcements, the link watcher) into one `Runner` and serves until
SIGTERM, SIGINT, SIGHUP or SIGQUIT (ucarp's set). The first signal stops
gracefully (bow-out advert, addresses removed, downscripts run); a second one
exits at once, in case something hangs. SIGUSR1 (or SIGUSR2) logs the state of
every virtual host and the drop counters, as ucarp's SIGUSR1 does.

``decode FILE.pcap --pass P --addr VIP... [--vhid N...]`` prints every CARP
advert of a capture (or only those of the given vhids) with its fields and
whether its checksum and HMAC verify: the tool for a peer that logs "Bad
digest". The summary names the vhids seen, since the adverts of other clusters
on the segment have other passwords and addresses and cannot verify.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from cluster.carp.config import (
    build_parser,
    configs_from_args,
    hooks_from_args,
    parse_address,
    read_config_file,
    realtime_priority_from_args,
)
from cluster.carp.ports import AddressManager
from cluster.carp.types import ConfigError, VirtualHostConfig

log = logging.getLogger("cluster.carp")

# Attributes every LogRecord has; anything else was passed in `extra=` and goes into JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(fmt: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pyroute2 logs its own internals at INFO; keep our log about CARP.
    logging.getLogger("pyroute2").setLevel(logging.WARNING)


def missing_source(
    configs: Sequence[VirtualHostConfig], addresses: AddressManager, interfaces: Sequence[str]
) -> str | None:
    """Why a virtual host could not advertise from its --srcip, or None.

    The kernel sends our adverts from --srcip only if it is an address of this
    node, on any interface ("Network is unreachable" otherwise); a daemon that
    cannot advertise would still take the VIP, beside the real master.
    """
    local = {a.ip for name in interfaces for a in addresses.list(name)}
    for config in configs:
        if config.src_ip not in local:
            return (
                f"vhid {config.vhid}: --srcip {config.src_ip} is not an address of this node,"
                " so no advert could be sent from it"
            )
    return None


def run(args: argparse.Namespace) -> int:
    # Imported here so that `decode` and `--help` work without pyroute2 or root.
    from cluster.carp.realtime import GcPauses, Realtime, quiet_gc
    from cluster.carp.runner import Hooks, SystemPorts

    setup_logging(args.log_format, args.log_level)
    try:
        data = read_config_file(args)
        configs = configs_from_args(args, data)
        upscript, downscript = hooks_from_args(args, data)
        priority = realtime_priority_from_args(args, data)
    except (ConfigError, OSError) as exc:
        log.error("configuration: %s", exc)
        return 2
    interfaces = sorted({c.interface for c in configs})
    for name in interfaces:
        try:
            socket.if_nametoindex(name)
        except OSError:
            log.error("no interface %r", name)
            return 2

    ports = SystemPorts(interfaces)
    try:
        problem = missing_source(configs, ports.addresses, [n for _, n in socket.if_nameindex()])
    except Exception as exc:  # netlink refused: the runner will say more
        problem = None
        log.warning("could not list this node's addresses: %s", exc)
    if problem:
        log.error("configuration: %s", problem)
        ports.close()
        return 2
    realtime = Realtime()
    runner = ports.runner(
        configs,
        hooks=Hooks(upscript, downscript, xparam=args.xparam),
        neutral=args.neutral,
        on_spin=realtime.on_spin,
    )
    gc_pauses = GcPauses()
    signals_seen = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info(
                "%s: stopping gracefully", signal.Signals(signum).name, extra={"event": "stop"}
            )
            runner.request_stop()
        else:
            # A second signal: the operator wants out now. A later start reconciles the VIPs.
            log.warning("%s again: exiting at once", signal.Signals(signum).name)
            os._exit(128 + signum)

    def on_dump(signum: int, _frame: FrameType | None) -> None:
        runner.request_dump()
        gc_pauses.log()

    # ucarp's signals: SIGTERM, SIGINT, SIGHUP and SIGQUIT end it (downscript with -z),
    # SIGUSR1 logs the state. Python's defaults for SIGHUP and SIGUSR1/2 would kill us
    # on the spot and leave the VIPs on the interface, with no bow-out.
    for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(stop_signal, on_signal)
    signal.signal(signal.SIGUSR1, on_dump)
    signal.signal(signal.SIGUSR2, on_dump)
    log.info(
        "starting %d virtual host(s) on %s",
        len(configs),
        ", ".join(interfaces),
        extra={
            "event": "start",
            "vhosts": [
                {
                    "vhid": c.vhid,
                    "interface": c.interface,
                    "src_ip": str(c.src_ip),
                    "advbase": c.advbase,
                    "advskew": c.advskew,
                    "preempt": c.preempt,
                    "addresses": [str(a) for a in c.addresses],
                }
                for c in configs
            ],
        },
    )
    ports.start()
    try:
        runner.start()
        if configs and not runner.snapshot().hosts:
            log.error("no virtual host could start (see above); exiting")
            runner.shutdown()
            return 1
        # After the start-up (imports, sockets, the first adverts' objects), so that
        # the threads started so far and the hooks' children stay normal tasks.
        if args.gc == "tuned":
            quiet_gc()
        gc_pauses.install()  # the pauses of the service, not of the start-up
        if realtime.enter(priority, lock_memory=True):
            realtime.guard_cpu()
        runner.serve()
    finally:
        ports.close()
    log.info("stopped", extra={"event": "stopped"})
    return 0


def decode(args: argparse.Namespace) -> int:
    """Print each CARP advert of a capture and whether checksum and HMAC verify.

    With ``--vhid``, only the adverts of those vhids are checked and the others
    are counted in a last line. Exit status, for the checked adverts: 0 when
    every one verifies, 1 when one does not (or a vhid asked for has no advert
    in the capture), 2 when the file cannot be read.
    """
    from cluster.carp import pcap

    try:
        vips = [parse_address(a) for a in args.addr]
        packets = pcap.read_file(args.pcap)
    except (ConfigError, OSError, pcap.PcapError) as exc:
        print(f"decode: {exc}", file=sys.stderr)
        return 2
    present = sorted({v for v in map(pcap.vhid_of, packets) if v is not None})
    skipped: list[pcap.CarpPacket] = []
    if args.vhids:
        packets, skipped = pcap.select_vhids(packets, args.vhids)
    inspections = pcap.inspect(packets, args.password, vips)
    print(pcap.format_report(inspections, skipped))
    failed = any(not i.checksum_ok or i.hmac_ok is False for i in inspections)
    if args.vhids:
        missing = sorted(set(args.vhids) - set(present))
        if missing:
            failed = True
            print(
                f"decode: no advert of vhid {', '.join(map(str, missing))} in the capture"
                f" (it holds {_vhids(present)})",
                file=sys.stderr,
            )
    elif len(present) > 1:
        print(
            f"decode: the capture holds adverts of vhids {', '.join(map(str, present))}:"
            " each cluster has its own password and addresses, give --vhid N to check only yours",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _vhids(vhids: Sequence[int]) -> str:
    if not vhids:
        return "no advert"
    return ("vhid " if len(vhids) == 1 else "vhids ") + ", ".join(map(str, vhids))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run(args)
    return decode(args)


if __name__ == "__main__":
    sys.exit(main())
