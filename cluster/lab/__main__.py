"""``python -m cluster.lab``: the demo cluster from a shell (``make demo`` and friends).

    demo [--nodes N] [--port 8000]   build the lab, serve the console, Ctrl-C to stop
    fail NODE / restore NODE         what the status page's buttons do
    mail-stop NODE / mail-start NODE   kill / start only the node's mail service
    smtp VIP                         who answers on VIP:25, asked from the client namespace
    clean                            remove what a crashed demo left behind
    check-root                       exit 1 with the reason when not root

Defaults come from the environment as ``make demo`` documents it: ``VAR_DIR``
(var/), ``DEMO_NODES`` (3) and ``REDIS_URL`` (unset: a private Redis).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cluster.lab.lab import MAX_NODES, REPO, require_root

# supervisor.ACTIONS, repeated: that module needs the venv (redis), and check-root
# must run with any python3. A test keeps the two the same.
ACTIONS = ("fail", "restore", "mail-stop", "mail-start")


def _nodes(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"between 1 and {MAX_NODES}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--var-dir", type=Path, default=Path(os.environ.get("VAR_DIR") or REPO / "var")
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo cluster until Ctrl-C")
    demo.add_argument("--nodes", type=_nodes, default=_nodes(os.environ.get("DEMO_NODES") or "3"))
    demo.add_argument("--port", type=int, default=8000)
    for action in ACTIONS:
        command = commands.add_parser(action, help=f"{action} a node of the running demo")
        command.add_argument("node")
    smtp = commands.add_parser("smtp", help="print the banner of whoever answers on VIP:25")
    smtp.add_argument("vip")
    smtp.add_argument("--port", type=int, default=25)
    commands.add_parser("clean", help="remove a crashed demo's processes and namespaces")
    commands.add_parser("check-root", help="exit 1, saying why, when not root")
    args = parser.parse_args(argv)
    var_dir = args.var_dir.resolve()

    # Imported here so that check-root runs with any python3, before the venv exists.
    if args.command == "check-root":
        require_root("make demo")
        return
    require_root(f"python -m cluster.lab {args.command}")
    from cluster.lab import supervisor

    if args.command == "demo":
        supervisor.run_demo(var_dir, args.nodes, args.port, os.environ.get("REDIS_URL") or None)
    elif args.command in supervisor.ACTIONS:
        print(supervisor.send_control(var_dir, args.command, args.node))
    elif args.command == "smtp":
        try:
            print(supervisor.client_banner(var_dir, args.vip, args.port))
        except OSError as exc:
            raise SystemExit(f"Nobody answers on {args.vip}:{args.port} ({exc}).") from None
    elif args.command == "clean":
        print("\n".join(supervisor.clean_stale(var_dir)) or "nothing to clean")


if __name__ == "__main__":
    main()
