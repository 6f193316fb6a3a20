"""The demo's mail service: a real SMTP server (aiosmtpd) whose banner names the node.

Each node namespace runs one on port 25
(``python -m cluster.lab.smtp node1 --record var/demo/mail``). It listens on
every address of the namespace, so a VIP that the node's engine holds answers
with the node's banner; from the client namespace,
``python -m cluster.lab smtp 192.0.2.101`` shows which node that is.

It accepts every message and keeps none: each one accepted is recorded as one
JSON line in ``<record>/<node>.jsonl`` (the node, the time, the envelope and the
Message-ID) *before* the 250 reply goes out. A message the client saw accepted
is therefore always in a record, which is how ``bench/mail_failover.py`` proves
that no message was lost across a failover; a service killed between the record
and the reply costs a duplicate (the client retries), never a loss, as with a
real MTA.

aiosmtpd is imported only where a server is built: the client helpers
(:func:`read_banner`, :func:`send_message`, :func:`read_records`) are used by the
lab, the web's demo setup and the benchmarks without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import smtplib
import socket
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session


def ident_for(node: str) -> str:
    return f"ESMTP demo mail service ({node} answers)"


def banner_for(node: str) -> str:
    """The greeting ``node``'s service sends (aiosmtpd's ``220 <hostname> <ident>``)."""
    return f"220 {node} {ident_for(node)}"


def record_path(record_dir: Path, node: str) -> Path:
    return record_dir / f"{node}.jsonl"


class RecordingHandler:
    """aiosmtpd's handler: every message gets one line in the node's record, then 250."""

    def __init__(self, node: str, record_dir: Path | None) -> None:
        self.node = node
        self.path = record_path(record_dir, node) if record_dir is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def entry(self, session: Session, envelope: Envelope) -> dict[str, Any]:
        content = envelope.original_content or b""
        headers = BytesHeaderParser().parsebytes(content)
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        return {
            "node": self.node,
            "at": time.time(),
            "peer": peer,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "message_id": headers.get("Message-ID", ""),
            "bytes": len(content),
        }

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        entry = self.entry(session, envelope)
        if self.path is not None:
            # One write(2) of one line on an O_APPEND file: lines never interleave,
            # and once written the line survives the process being killed.
            line = (json.dumps(entry) + "\n").encode()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return f"250 OK: queued by {self.node}"


async def start(node: str, host: str | None, port: int, record_dir: Path | None) -> asyncio.Server:
    """Listen as ``node`` on ``host``:``port`` (every address when None; port 0 picks one)."""
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    handler = RecordingHandler(node, record_dir)
    return await loop.create_server(
        # A new protocol object per connection, as aiosmtpd's own Controller does.
        lambda: SMTP(handler, hostname=node, ident=ident_for(node), loop=loop),
        host=host,
        port=port,
        reuse_address=True,
    )


async def serve(node: str, host: str | None, port: int, record_dir: Path | None) -> None:
    """Serve SMTP as ``node`` until the process ends."""
    server = await start(node, host, port, record_dir)
    async with server:
        await server.serve_forever()


# -- the client side ---------------------------------------------------------------
def read_banner(host: str, port: int = 25, timeout: float = 2.0) -> str:
    """Connect, return the greeting line (without CRLF) and say QUIT."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        stream = sock.makefile("rwb")
        line = stream.readline().decode("latin-1").rstrip("\r\n")
        stream.write(b"QUIT\r\n")
        stream.flush()
        return line


@dataclass(frozen=True)
class Sent:
    """What the server said to one message: its banner and the final reply to DATA."""

    banner: str
    code: int
    reply: str


def send_message(
    host: str,
    message_id: str,
    port: int = 25,
    timeout: float = 2.0,
    sender: str = "client@example.com",
    recipient: str = "postmaster@example.org",
) -> Sent:
    """Send one small message with ``message_id``; raises ``OSError`` (refused,
    timeout, reset) or ``smtplib.SMTPException`` when it was not accepted."""
    message = EmailMessage()
    message["From"], message["To"] = sender, recipient
    message["Subject"] = f"demo {message_id}"
    message["Message-ID"] = message_id
    message.set_content("A message through the VIP.\n")
    with smtplib.SMTP(timeout=timeout) as client:
        _code, greeting = client.connect(host, port)
        client.ehlo("client.example.com")
        client.mail(sender)
        client.rcpt(recipient)
        code, reply = client.data(message.as_bytes())
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        return Sent(f"220 {greeting.decode('latin-1')}", code, reply.decode("latin-1"))


def read_records(record_dir: Path) -> list[dict[str, Any]]:
    """Every message any node's service recorded under ``record_dir`` (a line cut
    short by a kill is skipped)."""
    records: list[dict[str, Any]] = []
    for path in sorted(record_dir.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                records.append(entry)
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cluster.lab.smtp", description=__doc__)
    parser.add_argument("node", help="the node's name, shown in the banner")
    parser.add_argument("--host", default="", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument(
        "--record", type=Path, default=None, help="directory of the <node>.jsonl records"
    )
    args = parser.parse_args(argv)
    # SIGTERM's default action ends the process; each record line is complete once written.
    asyncio.run(serve(args.node, args.host or None, args.port, args.record))


if __name__ == "__main__":
    main()
