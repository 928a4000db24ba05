"""Load generator for this project's server: many concurrent clients, latency percentiles, progress.

    python loadtest/loadgen.py --url ws://127.0.0.1:8765/ws --jwt-secret "$WS_JWT_SECRET" \\
        --connections 1000 --publishers 10 --rate 200 --duration 30

Opens ``--connections`` WebSockets (``--ramp`` per second, JWT per connection when a secret is
given), subscribes each to ``--channel``, then ``--publishers`` of them publish ``--rate`` messages
per second in total for ``--duration`` seconds. It reports, live on stderr and at the end:

* publish -> delivery latency (every subscriber's copy is a sample; the payload carries the send
  time on this machine's monotonic clock, so run the generator on one host),
* publish -> ack round trips,
* connection errors, closes and lost deliveries (expected minus received after a drain).

It speaks wire protocol v1 with the ``websockets`` client the project already depends on. One
Python process tops out around 10^4-10^5 deliveries/s; run several (``--id-offset`` keeps user
ids apart) or bench/ of the wsforge repository for more. Exit status: 0, or 1 when connections
failed or deliveries were lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol


@dataclass
class Stats:
    """Counters and latency samples (nanoseconds) shared by every client task."""

    opened: int = 0
    failed: int = 0
    closed: int = 0
    published: int = 0
    acked: int = 0
    errors: int = 0
    delivered: int = 0
    delivery_ns: list[int] = field(default_factory=list)
    ack_ns: list[int] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1


def percentiles(samples: list[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in milliseconds (nearest rank)."""
    if not samples:
        return {}
    ordered = sorted(samples)
    last = len(ordered) - 1

    def at(pct: float) -> float:
        return ordered[min(last, round(pct / 100 * last))] / 1e6

    return {"p50": at(50), "p90": at(90), "p99": at(99), "p99.9": at(99.9), "max": ordered[-1] / 1e6}


def make_token(secret: str, user: str, ttl_s: int) -> str:
    import jwt

    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl_s}, secret, algorithm="HS256")


def with_token(url: str, token: str | None) -> str:
    if token is None:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"access_token": token})) if q)
    return urlunsplit(parts._replace(query=query))


class Client:
    """One simulated user: connects, subscribes, reads everything, optionally publishes."""

    def __init__(self, index: int, args: argparse.Namespace, stats: Stats) -> None:
        self.index = index
        self.args = args
        self.stats = stats
        self.ws: ClientConnection | None = None
        self.pending: dict[str, int] = {}
        self.subscribed = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        args, stats = self.args, self.stats
        token = None
        if args.token:
            token = args.token
        elif args.jwt_secret:
            token = make_token(
                args.jwt_secret, f"load-{args.id_offset + self.index}", args.duration * 10 + 600
            )
        try:
            self.ws = await connect(
                with_token(args.url, token),
                subprotocols=[Subprotocol("wsforge.v1.json")],
                origin=Origin(args.origin) if args.origin else None,
                open_timeout=args.timeout,
                compression=None,
                max_queue=None,
            )
        except InvalidStatus as exc:
            stats.fail(f"HTTP {exc.response.status_code}")
            return
        except (OSError, TimeoutError) as exc:
            stats.fail(type(exc).__name__)
            return
        stats.opened += 1
        reader = asyncio.create_task(self.read())
        try:
            await self.request("subscribe", {})
            await asyncio.wait_for(self.subscribed.wait(), args.timeout)
            await stop.wait()
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            await asyncio.sleep(args.drain)  # deliveries still in flight when publishing stopped
            await self.ws.close()
            reader.cancel()

    async def request(self, action: str, payload: Any) -> None:
        assert self.ws is not None
        self.stats.published += action == "publish"
        rid = f"{action[0]}{self.index}-{len(self.pending)}-{time.monotonic_ns()}"
        self.pending[rid] = time.monotonic_ns()
        frame = {"v": 1, "type": "request", "action": action, "id": rid, "channel": self.args.channel}
        if payload:
            frame["payload"] = payload
        await self.ws.send(orjson.dumps(frame).decode())

    async def read(self) -> None:
        assert self.ws is not None
        stats = self.stats
        try:
            async for raw in self.ws:
                now = time.monotonic_ns()
                msg = orjson.loads(raw)
                kind = msg.get("type")
                if kind == "event":
                    payload = msg.get("payload")
                    if isinstance(payload, dict) and "lt_ns" in payload:
                        stats.delivered += 1
                        stats.delivery_ns.append(now - payload["lt_ns"])
                elif kind in ("response", "error"):
                    sent = self.pending.pop(msg.get("id"), None)
                    if kind == "error":
                        stats.errors += 1
                    elif sent is not None and msg.get("action") == "publish":
                        stats.acked += 1
                        stats.ack_ns.append(now - sent)
                    if msg.get("action") == "subscribe":
                        self.subscribed.set()
        except ConnectionClosed:
            stats.closed += 1

    async def publish_loop(self, rate: float, stop: asyncio.Event) -> None:
        """Publish ``rate`` messages/s on a fixed schedule until ``stop``."""
        loop = asyncio.get_running_loop()
        interval, due = 1 / rate, loop.time()
        while not stop.is_set() and self.ws is not None:
            await self.request("publish", {"text": self.args.text, "lt_ns": time.monotonic_ns()})
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))


async def progress(stats: Stats, args: argparse.Namespace, started: float, stop: asyncio.Event) -> None:
    """One status line per second on stderr (a terminal gets it redrawn in place)."""
    tty = sys.stderr.isatty()
    while not stop.is_set():
        await asyncio.sleep(1)
        lat = percentiles(stats.delivery_ns[-50_000:])
        line = (
            f"{time.monotonic() - started:5.0f}s  conns {stats.opened}/{args.connections} "
            f"(failed {stats.failed}, closed {stats.closed})  published {stats.published}  "
            f"delivered {stats.delivered}  p50 {lat.get('p50', 0):.2f} ms  p99 {lat.get('p99', 0):.2f} ms"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    stop = asyncio.Event()
    started = time.monotonic()
    ticker = asyncio.create_task(progress(stats, args, started, stop))
    clients = [Client(i, args, stats) for i in range(args.connections)]
    tasks = []
    for i, client in enumerate(clients):
        tasks.append(asyncio.create_task(client.run(stop)))
        if args.ramp and (i + 1) % max(1, int(args.ramp / 10)) == 0:
            await asyncio.sleep(0.1)
    waits = [asyncio.wait_for(c.subscribed.wait(), args.timeout) for c in clients]
    await asyncio.gather(*waits, return_exceptions=True)
    subscribed = sum(c.subscribed.is_set() for c in clients)
    publishers = [c for c in clients if c.subscribed.is_set()][: args.publishers]
    load_started = time.monotonic()
    pub_tasks = [asyncio.create_task(p.publish_loop(args.rate / len(publishers), stop)) for p in publishers]
    await asyncio.sleep(args.duration)
    stop.set()
    load_s = time.monotonic() - load_started
    await asyncio.gather(*pub_tasks, return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    await ticker
    expected = stats.published * subscribed
    return {
        "url": args.url,
        "channel": args.channel,
        "connections": {"requested": args.connections, "opened": stats.opened, "subscribed": subscribed,
                        "failed": stats.failed, "failures": stats.failures, "closed_early": stats.closed},
        "published": stats.published,
        "publish_rate": stats.published / load_s,
        "acked": stats.acked,
        "errors": stats.errors,
        "deliveries": {"expected": expected, "received": stats.delivered, "lost": max(0, expected - stats.delivered),
                       "rate": stats.delivered / load_s},
        "delivery_latency_ms": percentiles(stats.delivery_ns),
        "ack_latency_ms": percentiles(stats.ack_ns),
    }  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:8765/ws")
    p.add_argument(
        "--channel", default="room:loadtest", help="a channel whose namespace lets clients publish"
    )
    p.add_argument("--connections", type=int, default=100)
    p.add_argument("--ramp", type=float, default=500, help="new connections per second (0: all at once)")
    p.add_argument("--publishers", type=int, default=1)
    p.add_argument("--rate", type=float, default=10, help="publishes per second, all publishers together")
    p.add_argument("--duration", type=float, default=10, help="seconds of publishing")
    p.add_argument("--drain", type=float, default=1, help="seconds to wait for in-flight deliveries")
    p.add_argument("--timeout", type=float, default=10, help="connect and subscribe timeout, seconds")
    p.add_argument(
        "--jwt-secret", default=os.environ.get("WS_JWT_SECRET", ""), help="sign a token per connection"
    )
    p.add_argument("--token", default="", help="one token for every connection instead")
    p.add_argument("--origin", default=None, help="Origin header, when the server checks it")
    p.add_argument("--id-offset", type=int, default=0, help="first user number (several generators)")
    p.add_argument("--text", default="x" * 64, help="message text")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        c, d = result["connections"], result["deliveries"]
        print(
            f"connections: {c['opened']}/{c['requested']} opened, {c['failed']} failed {c['failures'] or ''}"
        )
        print(f"published:   {result['published']} ({result['publish_rate']:.1f}/s), acked {result['acked']}")
        print(f"deliveries:  {d['received']}/{d['expected']} ({d['rate']:.0f}/s), lost {d['lost']}")
        for name in ("delivery_latency_ms", "ack_latency_ms"):
            lat = result[name]
            print(f"{name:20} " + "  ".join(f"{k} {v:.2f}" for k, v in lat.items()))
    return 1 if result["connections"]["failed"] or result["deliveries"]["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
