"""Publish throughput and latency through one broker adapter of a generated project.

The RabbitMQ adapter orders every publish through one sequencer (a single-active-consumer queue
consumed by one instance at a time); Redis Streams and NATS JetStream order per channel inside
the broker. This measures what that costs: publishes per second through the adapter with
``--concurrency`` publishes in flight, spread over ``--channels`` channels, from the instance that
holds the sequencer (``--via local``) or from a second instance beside it (``--via remote``, the
request crosses the broker twice).

    python bench/broker_publish.py --project DIR --url amqp://127.0.0.1:5672/ --via remote

``DIR`` is a rendered project whose adapter serves ``--url`` (its ``src`` goes on ``sys.path``).
The figures include this process's own CPU (both instances live in it); the broker server's CPU
is not counted. Loopback only; every loop is bounded by ``--messages``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any


async def _noop(*_: Any) -> None:
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    project = Path(args.project).resolve()
    sys.path.insert(0, str(project / "src"))
    package = next(p.name for p in (project / "src").iterdir() if (p / "broker").is_dir())
    broker_mod = importlib.import_module(f"{package}.broker")
    base = importlib.import_module(f"{package}.broker.base")
    prefix = args.prefix or f"bench{uuid.uuid4().hex[:8]}"
    url = f"{args.url}{'&' if '?' in args.url else '?'}prefix={prefix}&op_timeout_s=5"
    first = broker_mod.create_broker(url)
    await first.start(_noop)
    if args.hold:
        # Hold the sequencer (start first) while other processes publish: its CPU per publish
        # is what one RabbitMQ deployment's publish rate is bounded by.
        cpu0 = time.process_time()
        await asyncio.sleep(args.hold)
        cpu = time.process_time() - cpu0
        await first.aclose()
        return {"role": "hold", "held_s": args.hold, "process_cpu_s": round(cpu, 3)}
    brokers = [first]
    if args.via == "remote":
        second = broker_mod.create_broker(url)
        await second.start(_noop)
        brokers.append(second)
    publisher = brokers[-1]
    options = base.ChannelOptions(history_size=100, durable=True)
    latencies: list[float] = []
    sem = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> None:
        async with sem:
            start = time.perf_counter()
            await publisher.publish(
                f"room:{i % args.channels}", {"i": i, "text": "x" * args.payload}, options
            )
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(one(i) for i in range(min(200, args.messages))))  # warm-up
    latencies.clear()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.messages)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    for broker in brokers:
        await broker.aclose()
    latencies.sort()
    return {
        "url": args.url.split("@")[-1],
        "via": args.via,
        "messages": args.messages,
        "concurrency": args.concurrency,
        "channels": args.channels,
        "publishes_per_s": round(args.messages / wall),
        "process_cpu_us_per_publish": round(cpu / args.messages * 1e6, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--via", choices=["local", "remote"], default="remote")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--payload", type=int, default=100, help="bytes of text in each payload")
    parser.add_argument("--prefix", default="", help="share one deployment between processes")
    parser.add_argument("--hold", type=float, default=0.0, help="only hold a broker for this long (seconds)")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
