"""Command-line options and the ``--config FILE`` format of the standalone daemon.

The options are ucarp's long (and short) options where they mean the same, so a
ucarp user switches by changing the program name::

    python -m cluster.carp run -i eth0 -s 192.0.2.11 -v 42 -p s3cret -a 192.0.2.100 -b 1 -k 0 -P

Differences from ucarp, on purpose: preemption is on unless ``--no-preempt``
(the appliance resumes its role when it returns); ``--addr`` may repeat and take
a prefix; ``--srcip`` may be given once per address family. ucarp's ``-f`` (syslog
facility) is accepted and ignored, the log goes to stderr; ``-B``, ``-r``, ``-S``,
``-M`` and ``-m`` are refused by name.

``--config FILE`` (TOML, or JSON if the name ends in .json) holds many virtual
hosts for one process; top-level keys are defaults for every virtual host and
command-line options are defaults for the file::

    interface = "eth0"
    srcip = ["192.0.2.11", "2001:db8::b"]
    advbase = 1
    [[vhost]]
    vhid = 42
    password = "s3cret"            # or passfile = "/etc/carp/42.pass"
    addresses = ["192.0.2.100", "192.0.2.101/24"]
    advskew = 0
    preempt = true
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import json
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cluster.carp.realtime import DEFAULT_PRIORITY
from cluster.carp.types import (
    MAX_PASSWORD_BYTES,
    ConfigError,
    IPAddress,
    IPInterface,
    VirtualHostConfig,
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def parse_address(text: str) -> IPInterface:
    """A virtual address with an optional prefix; a bare address means /32 or /128.

    ucarp users give a bare IP (``-a 192.0.2.100``). A host prefix adds no subnet
    route that could clash with the node's own address on the same subnet.
    """
    try:
        return ipaddress.ip_interface(text.strip())
    except ValueError as exc:
        raise ConfigError(f"not an address: {text!r}") from exc


def parse_ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError as exc:
        raise ConfigError(f"not an IP address: {text!r}") from exc


def read_password(path: str) -> bytes:
    """ucarp's --passfile: the first line of the file, without its line break."""
    data = Path(path).read_bytes()
    return data.splitlines()[0] if data else b""


def choose_source(srcips: Sequence[IPAddress], addresses: Sequence[IPInterface]) -> IPAddress:
    """The node address a virtual host advertises from: same family as its first address.

    The family of the source picks IPv4 or IPv6 CARP (224.0.0.18 or ff02::12); with
    only one source given it is used whatever the addresses.
    """
    if not srcips:
        raise ConfigError("--srcip (the node's own address) is required")
    family = addresses[0].version if addresses else srcips[0].version
    for ip in srcips:
        if ip.version == family:
            return ip
    return srcips[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.carp",
        description="CARP (IP protocol 112) daemon, wire-compatible with ucarp and the BSDs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run virtual hosts (ucarp-style options or --config)")
    run.add_argument("-i", "--interface", help="interface to run on (ucarp -i)")
    run.add_argument(
        "-s",
        "--srcip",
        action="append",
        default=[],
        help="this node's own address; once per family (ucarp -s)",
    )
    run.add_argument("-v", "--vhid", type=int, help="virtual host id 1..255 (ucarp -v)")
    run.add_argument("-p", "--pass", dest="password", help="password, at most 19 bytes (ucarp -p)")
    run.add_argument("-o", "--passfile", help="read the password from a file (ucarp -o)")
    run.add_argument(
        "-a",
        "--addr",
        action="append",
        default=[],
        help="virtual address, prefix allowed (default /32 or /128); repeatable (ucarp -a)",
    )
    run.add_argument("-b", "--advbase", type=int, help="advertisement base, seconds (ucarp -b)")
    run.add_argument("-k", "--advskew", type=int, help="advertisement skew 0..254 (ucarp -k)")
    run.add_argument(
        "-P",
        "--preempt",
        dest="preempt",
        action="store_true",
        default=None,
        help="take over from a slower master (default on)",
    )
    run.add_argument("--no-preempt", dest="preempt", action="store_false")
    run.add_argument("-u", "--upscript", help="run as '<script> <interface> <vip>' on MASTER")
    run.add_argument("-d", "--downscript", help="run as '<script> <interface> <vip>' on leaving")
    run.add_argument(
        "-n",
        "--neutral",
        action="store_true",
        help="do not run the downscript at start in BACKUP (ucarp -n)",
    )
    run.add_argument(
        "-z",
        "--shutdown",
        action="store_true",
        help="accepted for ucarp compatibility: addresses are always removed on exit",
    )
    run.add_argument(
        "-x",
        "--xparam",
        help="extra argument for the scripts: '<script> <interface> <vip> <xparam>' (ucarp -x)",
    )
    run.add_argument(
        "-f",
        "--facility",
        help="accepted for ucarp compatibility: the log goes to stderr (journald/syslog)",
    )
    run.add_argument(
        "--peer-only",
        dest="peers",
        metavar="ADDR",
        action="append",
        default=[],
        help="accept adverts only from this peer address (repeatable); replayed"
        " adverts (a counter already seen from that peer) are dropped too",
    )
    run.add_argument(
        "--strict-counters",
        action="store_true",
        default=None,
        help="with --peer-only: the peers count up (this daemon, FreeBSD): refuse any"
        " counter not above the last one accepted (not for ucarp, whose counters are"
        " random)",
    )
    run.add_argument(
        "--realtime-priority",
        type=int,
        metavar="N",
        help="run the protocol loop in SCHED_RR at this priority, 1..99, with its memory"
        " locked (keepalived's vrrp_rt_priority and vrrp_no_swap); 0 turns it off."
        f" Default {DEFAULT_PRIORITY}, where allowed (root or CAP_SYS_NICE);"
        " otherwise one log line and normal scheduling",
    )
    run.add_argument(
        "--gc",
        choices=("tuned", "default"),
        default="tuned",
        help="tuned (default): freeze the start-up heap and collect less often; default:"
        " Python's own settings (to compare)",
    )
    run.add_argument("--config", help="TOML or JSON file with many virtual hosts")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO", help="default INFO"
    )
    run.add_argument(
        "-D",
        "--debug",
        dest="log_level",
        action="store_const",
        const="DEBUG",
        help="same as --log-level debug (ucarp -D)",
    )

    decode = sub.add_parser("decode", help="print and verify every CARP advert in a capture")
    decode.add_argument("pcap", help="a pcap file (tcpdump -w)")
    decode.add_argument(
        "-p",
        "--pass",
        dest="password",
        type=password_argument,
        help=f"password to verify the HMAC, at most {MAX_PASSWORD_BYTES} bytes",
    )
    decode.add_argument(
        "-a", "--addr", action="append", default=[], help="virtual address(es) of the vhid"
    )
    decode.add_argument(
        "-v",
        "--vhid",
        dest="vhids",
        metavar="N",
        action="append",
        type=vhid_argument,
        help="check only the adverts of this vhid (repeatable; default: every advert)",
    )
    return parser


def _load_file(path: str) -> dict[str, Any]:
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode())
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/object")
    return data


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def check_password(password: bytes, where: str = "") -> bytes:
    """The password as it is, or ConfigError if it is longer than BSD ifconfig and ucarp allow."""
    if len(password) > MAX_PASSWORD_BYTES:
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}the password is at most {MAX_PASSWORD_BYTES} bytes (as in BSD ifconfig"
            f" and ucarp), not {len(password)}"
        )
    return password


def password_argument(text: str) -> bytes:
    """argparse type for ``decode --pass``: a password too long is a usage error naming it."""
    try:
        return check_password(text.encode())
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def vhid_argument(text: str) -> int:
    """argparse type for ``decode --vhid``: a whole number 1..255."""
    try:
        vhid = int(text)
    except ValueError:
        vhid = 0
    if not 1 <= vhid <= 255:
        raise argparse.ArgumentTypeError(f"a vhid is a whole number 1..255, not {text!r}")
    return vhid


def _password(entry: dict[str, Any], where: str) -> bytes:
    if entry.get("password") is not None:
        password = str(entry["password"]).encode("utf-8", "surrogateescape")
    elif entry.get("passfile"):
        password = read_password(str(entry["passfile"]))
    else:
        raise ConfigError(f"{where}: a password (--pass or --passfile) is required")
    return check_password(password, where)


# The keys of a [[vhost]] table; the top level may hold them too, as defaults.
VHOST_KEYS = frozenset(
    {"vhid", "interface", "srcip", "password", "passfile", "addresses", "advbase", "advskew",
     "preempt", "peers", "strict_counters"}
)  # fmt: skip
TOP_LEVEL_KEYS = VHOST_KEYS | {"upscript", "downscript", "vhost", "vhosts", "realtime_priority"}
# The top-level keys that are the daemon's, not defaults of every virtual host.
DAEMON_KEYS = ("upscript", "downscript", "realtime_priority")


def _check_keys(table: dict[str, Any], known: frozenset[str], where: str) -> None:
    """Refuse a key we do not know: a misspelt ``advskew`` must not silently mean 0."""
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where}: unknown key {key!r}{hint} (known: {', '.join(sorted(known))})"
            )


def _int(merged: dict[str, Any], key: str, default: int, where: str) -> int:
    value = merged.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{where}: {key} must be a whole number, not {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {key} must be a whole number, not {value!r}") from exc


def _bool(merged: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = merged.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _vhost(entry: dict[str, Any], defaults: dict[str, Any], where: str) -> VirtualHostConfig:
    merged = {**defaults, **{k: v for k, v in entry.items() if v is not None}}
    for key in ("vhid", "interface"):
        if merged.get(key) in (None, ""):
            raise ConfigError(f"{where}: {key} is required")
    addresses = tuple(parse_address(str(a)) for a in _as_list(merged.get("addresses")))
    if not addresses:
        raise ConfigError(f"{where}: at least one address (--addr) is required")
    srcips = [parse_ip(str(s)) for s in _as_list(merged.get("srcip"))]
    for address in addresses:
        if address.ip in srcips:
            # Stopping (even in BACKUP) removes the VIPs: it would take the node's address.
            raise ConfigError(f"{where}: {address.ip} is this node's own address (--srcip)")
    peers = frozenset(parse_ip(str(p)) for p in _as_list(merged.get("peers")))
    strict = _bool(merged, "strict_counters", False, where)
    if strict and not peers:
        raise ConfigError(f"{where}: strict_counters (--strict-counters) needs peers")
    return VirtualHostConfig(
        vhid=_int(merged, "vhid", 0, where),
        interface=str(merged["interface"]),
        password=_password(merged, where),
        addresses=addresses,
        advbase=_int(merged, "advbase", 1, where),
        advskew=_int(merged, "advskew", 0, where),
        preempt=_bool(merged, "preempt", True, where),
        src_ip=choose_source(srcips, addresses),
        peers=peers,
        strict_counters=strict,
    )


def vhost_to_data(config: VirtualHostConfig) -> dict[str, Any]:
    """A virtual host as plain data: one ``[[vhost]]`` table of ``--config``.

    The one conversion of a `VirtualHostConfig` to and from plain data
    (`vhost_from_data` reads it back): the daemon's TOML/JSON, the node host's
    encrypted local copy and its configuration digest all go through these two.
    The password is text; bytes that are not UTF-8 (a ``--passfile``) survive the
    round trip as surrogate escapes.
    """
    return {
        "vhid": config.vhid,
        "interface": config.interface,
        "srcip": [str(config.src_ip)] if config.src_ip is not None else [],
        "password": config.password.decode("utf-8", "surrogateescape"),
        "addresses": [str(a) for a in config.addresses],
        "advbase": config.advbase,
        "advskew": config.advskew,
        "preempt": config.preempt,
        "peers": sorted(str(p) for p in config.peers),
        "strict_counters": config.strict_counters,
    }


def vhost_from_data(data: dict[str, Any], where: str = "vhost") -> VirtualHostConfig:
    """The virtual host of one ``[[vhost]]`` table (raises ConfigError naming ``where``)."""
    _check_keys(data, VHOST_KEYS, where)
    return _vhost(data, {}, where)


def _cli_defaults(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "interface": args.interface,
        "srcip": args.srcip or None,
        "advbase": args.advbase,
        "advskew": args.advskew,
        "preempt": args.preempt,
        "password": args.password,
        "passfile": args.passfile,
        "peers": args.peers or None,
        "strict_counters": args.strict_counters,
    }


def read_config_file(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--config`` file's contents ({} without one), to read it once for
    `configs_from_args` and `hooks_from_args`."""
    return _load_file(args.config) if args.config else {}


def configs_from_args(
    args: argparse.Namespace, data: dict[str, Any] | None = None
) -> list[VirtualHostConfig]:
    """The virtual hosts of a ``run`` command line: ``--config`` or the ucarp-style options.

    ``data`` is what `read_config_file` returned; read here when not given.
    """
    cli = {k: v for k, v in _cli_defaults(args).items() if v is not None}
    configs: list[VirtualHostConfig] = []
    if args.config:
        data = dict(read_config_file(args) if data is None else data)  # popped below
        _check_keys(data, TOP_LEVEL_KEYS, args.config)
        entries = data.pop("vhost", data.pop("vhosts", []))
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{args.config}: no [[vhost]] entries")
        defaults = {**cli, **{k: v for k, v in data.items() if k not in DAEMON_KEYS}}
        for n, entry in enumerate(entries, 1):
            where = f"{args.config} vhost #{n}"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where}: must be a table/object, not {entry!r}")
            _check_keys(entry, VHOST_KEYS, where)
            configs.append(_vhost(dict(entry), defaults, where))
        if args.vhid is not None or args.addr:
            raise ConfigError("give either --config or --vhid/--addr, not both")
    else:
        configs.append(_vhost({"vhid": args.vhid, "addresses": args.addr}, cli, "command line"))
    keys = [(c.interface, c.vhid) for c in configs]
    if len(set(keys)) != len(keys):
        raise ConfigError("a vhid appears twice on the same interface")
    owner: dict[tuple[str, IPAddress], int] = {}
    for config in configs:
        for ip in config.ips:
            other = owner.setdefault((config.interface, ip), config.vhid)
            if other != config.vhid:
                # The vhid that steps down would remove the address the other one serves.
                raise ConfigError(f"{ip} is in vhid {other} and vhid {config.vhid}")
    return configs


def hooks_from_args(
    args: argparse.Namespace, data: dict[str, Any] | None = None
) -> tuple[str | None, str | None]:
    """Up/down scripts: the command line wins over the file's top-level keys.

    A relative path is taken from the directory the daemon starts in, as ucarp's
    execl() does (``-u up.sh`` runs ./up.sh); a bare name is not looked up in PATH.
    ``data`` is what `read_config_file` returned; read here when not given.
    """
    up, down = args.upscript, args.downscript
    if args.config and (up is None or down is None):
        data = read_config_file(args) if data is None else data
        up = up or data.get("upscript")
        down = down or data.get("downscript")
    return _script_path(up), _script_path(down)


def realtime_priority_from_args(args: argparse.Namespace, data: dict[str, Any]) -> int:
    """``--realtime-priority``, else the file's ``realtime_priority``, else the default."""
    value = args.realtime_priority
    if value is None:
        value = _int(data, "realtime_priority", DEFAULT_PRIORITY, args.config or "")
    if not 0 <= value <= 99:
        raise ConfigError(f"realtime_priority must be 0..99 (0: off), not {value}")
    return int(value)


def _script_path(script: Any) -> str | None:
    return os.path.abspath(str(script)) if script else None
