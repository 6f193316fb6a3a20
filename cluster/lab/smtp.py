"""The demo's stand-in mail service: just enough SMTP to show who answers.

Each node namespace runs one on port 25 (``python -m cluster.lab.smtp node1``).
It listens on every address of the namespace, so a VIP that the node's engine
holds answers with the node's banner; from the client namespace,
``python -m cluster.lab smtp 192.0.2.101`` shows which node that is.
It speaks HELO, EHLO, NOOP and QUIT and answers 502 to anything else: it is a
marker, not a mail server.
"""

from __future__ import annotations

import argparse
import asyncio
import socket


def banner_for(node: str) -> str:
    return f"220 {node} ESMTP demo stand-in ({node} answers)"


def reply(node: str, line: str) -> tuple[str, bool]:
    """The reply to one command line, and whether to close the connection after it."""
    verb = line.strip().split(" ", 1)[0].upper()
    if verb in ("HELO", "EHLO"):
        return f"250 {node}", False
    if verb == "NOOP":
        return "250 OK", False
    if verb == "QUIT":
        return f"221 {node} closing", True
    return "502 command not implemented", False


async def _session(node: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(f"{banner_for(node)}\r\n".encode())
        await writer.drain()
        while line := await asyncio.wait_for(reader.readline(), timeout=60):
            text, close = reply(node, line.decode("latin-1"))
            writer.write(f"{text}\r\n".encode())
            await writer.drain()
            if close:
                break
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(node: str, host: str | None, port: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _session(node, r, w), host=host, port=port, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def read_banner(host: str, port: int = 25, timeout: float = 2.0) -> str:
    """Connect, return the greeting line (without CRLF) and say QUIT."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        stream = sock.makefile("rwb")
        line = stream.readline().decode("latin-1").rstrip("\r\n")
        stream.write(b"QUIT\r\n")
        stream.flush()
        return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cluster.lab.smtp", description=__doc__)
    parser.add_argument("node", help="the node's name, shown in the banner")
    parser.add_argument("--host", default="", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=25)
    args = parser.parse_args(argv)
    # SIGTERM's default action ends the process; nothing to clean up.
    asyncio.run(serve(args.node, args.host or None, args.port))


if __name__ == "__main__":
    main()
