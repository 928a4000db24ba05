"""User-space CPU per request of a server's whole picows path, without the network or a load generator.

    python bench/reqrep_path.py --project bench/.work/chat-demo-picows-mypyc   # the generated server
    python bench/reqrep_path.py --peer                                          # peers/picows_json_peer.py
    python bench/reqrep_path.py --project DIR --action publish

Feeds masked client frames straight into picows' real ``WSProtocol`` (``get_buffer`` /
``buffer_updated``, as the event loop would), after a real upgrade with a JWT, and takes the
process CPU time per request: picows' parser, the listener, the server's request path, the reply's
framing and its ``send()`` (to one end of a Unix socket pair, read and dropped in batches). No load
generator, no event-loop wake-ups, no TCP: on a shared machine this A/B-compares two builds of the
request path to a few per cent, where the end-to-end closed loop (``run.py --workloads reqrep-ping``)
moves by tens of per cent with the neighbours' load. It does not replace that figure: the kernel's
TCP work and the loop are the same for every subject but are most of a real round trip.

Each run prints one JSON line; run it pinned (``taskset -c 0``) and interleave subjects.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import jwt

BENCH = Path(__file__).resolve().parent
SECRET = "bench-secret-0123456789abcdef-0123456789"  # noqa: S105 - a throwaway, in-process only
PING = '{"v":1,"type":"request","action":"ping","id":"p%d"}'
PUBLISH = (
    '{"v":1,"type":"request","action":"publish","id":"p%d","channel":"room:rr1","payload":{"text":"'
    + "x" * 64
    + '"}}'
)


class _Socket:
    """What picows asks of the transport's socket: options (ignored) and a descriptor to send() to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def setsockopt(self, *args: Any) -> None:
        pass

    def getsockopt(self, *args: Any) -> int:
        return 0

    def fileno(self) -> int:
        return self.sock.fileno()


class _Transport(asyncio.Transport):
    """An asyncio transport with nothing buffered: picows then send()s replies itself."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.extra = {
            "peername": ("127.0.0.1", 50000),
            "sockname": ("127.0.0.1", 8765),
            "socket": _Socket(sock),
        }
        self.written = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: Any) -> None:
        self.written += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def masked(payload: bytes) -> bytes:
    """One masked client text frame (RFC 6455 §5.3) carrying ``payload`` (< 64 KiB)."""
    mask = b"\x01\x02\x03\x04"
    size = len(payload)
    head = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")


def feed(proto: Any, data: bytes) -> None:
    view = proto.get_buffer(len(data))
    view[: len(data)] = data
    proto.buffer_updated(len(data))


def generated_protocol(project: Path) -> tuple[Any, Any]:
    """The project's server and a picows protocol built by its own adapter."""
    os.environ.update(
        {
            "WS_JWT_SECRET": SECRET,
            "WS_RATE_PER_S": "10000000",
            "WS_RATE_BURST": "10000000",
            "WS_LOG_LEVEL": "WARNING",
            "WS_TRANSPORT": "picows",
        }
    )
    package = next(p.name for p in sorted((project / "src").iterdir()) if (p / "__main__.py").exists())
    sys.path.insert(0, str(project / "src"))
    settings_mod = importlib.import_module(f"{package}.settings")
    server_mod = importlib.import_module(f"{package}.server")
    picows_mod = importlib.import_module(f"{package}.transport.picows")
    settings = settings_mod.Settings.from_env()
    server = server_mod.Server(settings)
    return server, picows_mod.PicowsTransport(server, settings)._protocol()


def peer_protocol() -> Any:
    """The minimal peer's listener in picows' protocol, as ``ws_create_server`` builds it."""
    from picows.picows import WSProtocol  # type: ignore[attr-defined]

    sys.path.insert(0, str(BENCH / "peers"))
    from picows_json_peer import MinimalListener

    args = (None, None, False, lambda request: MinimalListener(), logging.getLogger("peer"), True, 5.0, False)
    return WSProtocol(*args, 10.0, 10.0, 1, True, 10 * 1024 * 1024, None, 16 * 1024)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    if args.project is not None:
        server, proto = generated_protocol(args.project)
        await server.broker.start(server.fanout.deliver)
    else:
        proto = peer_protocol()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    replies = 0

    def drain() -> None:
        nonlocal replies
        try:
            while chunk := theirs.recv(1 << 20):
                replies += chunk.count(b'"id"')
        except BlockingIOError:
            pass

    proto.connection_made(_Transport(ours))
    token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = (
        f"GET /ws?access_token={token} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    feed(proto, upgrade.encode())
    for _ in range(5):  # the generated server starts its connection in a task
        await asyncio.sleep(0)
    template = PING if args.action == "ping" else PUBLISH
    frames = [masked((template % i).encode()) for i in range(args.requests)]
    drain()
    replies, best = 0, float("inf")
    for _ in range(args.repeats):
        started = time.process_time()
        for i, data in enumerate(frames):
            feed(proto, data)
            if i % 100 == 99:
                drain()
        best = min(best, (time.process_time() - started) / len(frames))
        drain()
        await asyncio.sleep(0)
    if replies != args.repeats * len(frames):
        raise SystemExit(f"{replies} replies to {args.repeats * len(frames)} requests: not the inline path?")
    return {
        "subject": str(args.project) if args.project else "picows-json",
        "action": args.action,
        "us_per_request": round(best * 1e6, 3),
        "requests": len(frames),
        "repeats": args.repeats,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--project", type=Path, help="a rendered picows project (its mypyc build if compiled)")
    who.add_argument("--peer", action="store_true", help="peers/picows_json_peer.py")
    p.add_argument("--action", choices=["ping", "publish"], default="ping")
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=7, help="best of")
    args = p.parse_args()
    if args.project is not None:
        import uvloop  # the generated server's loop (WS_EVENT_LOOP=auto)

        result = uvloop.run(measure(args))
    else:
        result = asyncio.run(measure(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
