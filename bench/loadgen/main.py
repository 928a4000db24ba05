"""The bench's load generator: one process, picows clients, results as one JSON object on stdout.

    python bench/loadgen/main.py fanout --urls 127.0.0.1:9001 --server-pids 123 --subs 1000
    python bench/loadgen/main.py reqrep --urls 127.0.0.1:9001 --server-pids 123 --clients 50
    python bench/loadgen/main.py idle   --urls 127.0.0.1:9001 --server-pids 123 --conns 10000

Every phase is bounded (warm-up + measurement seconds, drain and connect timeouts that scale with
``BENCH_UNIT``) and the process exits by itself. Run it pinned to a core the server does not use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt
from conn import Opener, Session, open_conn, open_many
from raw import RawConn, open_raw
from stats import CpuMeter, latency_summary, rss_kib
from wire import DIALECTS, Dialect, publish_payload

UNIT = float(os.environ.get("BENCH_UNIT", "1"))
"""Scales every timeout (not the measurement windows): raise it on a slow or busy machine."""
SUBSCRIBE_BATCH = 50
"""Subscribes in flight during setup: well under the generated server's 256-frame outbox."""
EVERY_SUBSCRIBER_SAMPLES = frozenset({"slow", "fixed"})
"""Latency passes at a few publishes per second, where every subscriber samples, not only the
picows ones (a raw connection keeps its reads and parses the send times after the pass, see
``RawConn.latencies``). Why: the delivery at position k of a server's send order waits for k sends,
and a server whose room is a ``set`` (raw picows, raw websockets) puts the one-in-ten samplers at
random positions, new each pass. Against raw picows, 1,000 subscribers, 20 publishes/s, the
samplers' p50 differed from all subscribers' p50 by -0.64 to +0.96 ms per pass (5 passes); against
the generated server, whose room keeps join order, by -0.04 ms every time. That is larger than the
0.2 ms the slow-publisher target allows. At half the saturated rate only the picows samplers
sample: keeping every read there would cost the generator more than the fastest servers do."""
CHANNEL = "room:bench"
"""In the chat example's ``room`` namespace (authenticated, members publish, presence on)."""


def tokens(secret: str, n: int) -> list[str | None]:
    if not secret:
        return [None] * n
    exp = int(time.time()) + 3600
    return [jwt.encode({"sub": f"user{i}", "exp": exp}, secret, algorithm="HS256") for i in range(n)]


class Target:
    """Where the load goes: one or more server instances and the dialect they speak."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.dialect: Dialect = DIALECTS[args.dialect]
        self.addrs = [(h, int(p)) for h, p in (u.rsplit(":", 1) for u in args.urls.split(","))]
        self.path = args.path
        self.secret = args.jwt_secret
        self.concurrency = args.concurrency

    async def connect(
        self,
        n: int,
        *,
        instance: Callable[[int], int] = lambda i: 0,
        opener_for: Callable[[int], Opener] = lambda i: open_conn,
    ) -> list[Session]:
        toks = tokens(self.secret, n)

        async def one(i: int) -> Session:
            host, port = self.addrs[instance(i) % len(self.addrs)]
            opener = opener_for(i)
            conn = await opener(self.dialect, host, port, self.dialect.path(self.path, toks[i]), 10 * UNIT)
            conn.group = instance(i) % len(self.addrs)
            return conn

        return await open_many(n, one, self.concurrency)


def close_all(conns: list[Session]) -> None:
    for c in conns:
        c.close()


async def window(
    meter: CpuMeter, warmup: float, measure: float, read: Callable[[], int]
) -> tuple[int, float]:
    """Sleep through warm-up, then count ``read()`` and CPU over ``measure`` seconds."""
    await asyncio.sleep(warmup)
    n0, t0 = read(), time.monotonic()
    meter.start()
    await asyncio.sleep(measure)
    n1, t1 = read(), time.monotonic()
    meter.stop()
    return n1 - n0, t1 - t0


def cpu_fields(meter: CpuMeter, seconds: float, events: int) -> dict[str, Any]:
    return {
        "server_cpu_s": meter.server_s,
        "server_cpu_pct": 100 * meter.server_s / seconds,
        "server_user_pct": 100 * meter.server_user_s / meter.server_s if meter.server_s > 0 else float("nan"),
        "server_us_per_event": 1e6 * meter.server_s / events if events else float("nan"),
        "loadgen_cpu_pct": 100 * meter.loadgen_s / seconds,
        "per_server_cpu_s": events / meter.server_s if meter.server_s > 0 else float("nan"),
        "core_busy_pct": meter.core_busy_pct,
    }


# fan-out --------------------------------------------------------------------------------------
class Pump:
    """Keeps publishers saturating while bounding deliveries in flight end to end.

    A publish is sent only while ``published * subs - delivered < window * subs``: the server is
    never idle for lack of input, yet its outbound buffers cannot grow without bound, so the rate
    measured at the receivers is a sustained one.
    """

    def __init__(self, pubs: list[Session], subs: int, window: int, dialect: Dialect) -> None:
        self.pubs, self.subs, self.dialect = pubs, subs, dialect
        self.limit = window * subs
        self.per_pub = max(1, window)
        self.published = self.delivered = 0
        self.blocked = False
        self.running = True
        self.rr = 0
        self.outstanding = {id(p): 0 for p in pubs}

    def on_deliveries(self, n: int) -> None:
        self.delivered += n
        if self.blocked and self.published * self.subs - self.delivered < self.limit:
            self.fill()

    def on_ack(self, pub: Session) -> None:
        self.outstanding[id(pub)] -= 1
        self.fill()

    def fill(self) -> None:
        self.blocked = False
        pubs, n = self.pubs, len(self.pubs)
        while self.running:
            if self.published * self.subs - self.delivered >= self.limit:
                self.blocked = True
                return
            for _ in range(n):
                pub = pubs[self.rr % n]
                self.rr += 1
                if self.outstanding[id(pub)] < self.per_pub:
                    break
            else:
                return
            self.outstanding[id(pub)] += 1
            self.published += 1
            pub.send(self.dialect.publish(CHANNEL, self.published, publish_payload(time.monotonic_ns())))


def ignore_reply(conn: Session) -> None:
    """Acks of paced publishes carry nothing the fan-out workload measures."""


async def paced(pub: Session, dialect: Dialect, rate: float, seconds: float) -> int:
    """Publish ``rate`` messages/s for ``seconds``; each carries its actual send time."""
    loop = asyncio.get_running_loop()
    interval = 1 / rate
    start = time.monotonic()
    sent = 0
    done = loop.create_future()

    def tick() -> None:
        nonlocal sent
        now = time.monotonic()
        if now - start >= seconds:
            done.set_result(None)
            return
        due = int((now - start) / interval) + 1
        while sent < due:
            sent += 1
            pub.send(dialect.publish(CHANNEL, 10_000_000 + sent, publish_payload(time.monotonic_ns())))
        loop.call_at(loop.time() + max(0.0, start + sent * interval - time.monotonic()), tick)

    tick()
    await done
    return sent


async def drain(read: Callable[[], int], expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while read() < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return read()


class Relay:
    """Hands delivery counts to the saturation :class:`Pump` while one runs, else drops them."""

    def __init__(self) -> None:
        self.to: Callable[[int], None] | None = None

    def __call__(self, n: int) -> None:
        if self.to is not None:
            self.to(n)


async def subscribers(
    target: Target, n: int, sample_every: int, relay: Relay
) -> tuple[list[Session], list[Session]]:
    """``n`` subscribers of ``CHANNEL`` spread over the instances: (all of them, the samplers).

    Every ``sample_every``-th subscriber of each instance is a picows client that sees every frame
    and samples latency; the rest are :class:`raw.RawConn`s that count deliveries per read from the
    moment they are subscribed. A per-frame callback for every delivery made the generator, not the
    fastest servers, the limit on a 2-core machine, both at saturation and at half of it.
    """
    per_instance = len(target.addrs)

    def opener(i: int) -> Opener:
        return open_conn if (i // per_instance) % sample_every == 0 else open_raw

    subs = await target.connect(n, instance=lambda i: i, opener_for=opener)
    # Subscribes go out SUBSCRIBE_BATCH at a time (one per connection, so each reply is still
    # matched): one at a time, a server with presence on spent ~20 s of setup per pass on 1,000
    # members; all at once, every member gets ~1,000 presence.join events in one loop iteration,
    # past a 256-frame outbox, and is closed as a slow consumer (4009) as it should be.
    for first in range(0, len(subs), SUBSCRIBE_BATCH):
        batch = subs[first : first + SUBSCRIBE_BATCH]
        await asyncio.gather(
            *(s.call(target.dialect.subscribe(CHANNEL, first + i), 10 * UNIT) for i, s in enumerate(batch))
        )
    samplers = []
    for s in subs:
        if isinstance(s, RawConn):
            s.count_in_bulk(relay)
        else:
            s.count_deliveries(relay)
            samplers.append(s)
    return subs, samplers


async def fanout(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    meter = CpuMeter(args.server_pids, args.cores)
    t_setup = time.monotonic()
    relay = Relay()
    subs, samplers = await subscribers(target, args.subs, args.sample_every, relay)
    t_subscribed = time.monotonic()
    pubs = await target.connect(args.publishers)
    result: dict[str, Any] = {
        "subs": len(subs),
        "latency_samplers": len(samplers),
        "publishers": len(pubs),
        "instances": len(target.addrs),
        "subscribe_s": t_subscribed - t_setup,
    }

    def delivered() -> int:
        return sum(s.count for s in subs)

    max_rate = args.fixed_rate * len(subs) if args.fixed_rate else 0.0
    if not args.fixed_rate:
        pump = Pump(pubs, len(subs), args.window, target.dialect)
        relay.to = pump.on_deliveries
        for p in pubs:
            p.count_replies(pump.on_ack)
        pump.fill()
        n, secs = await window(meter, args.warmup, args.measure, lambda: pump.delivered)
        pump.running = False
        got = await drain(lambda: pump.delivered, pump.published * len(subs), 10 * UNIT)
        relay.to = None
        max_rate = n / secs
        result["saturated"] = {
            "deliveries_per_s": max_rate,
            "publishes_per_s": max_rate / len(subs),
            **cpu_fields(meter, secs, n),
            "undelivered_after_drain": pump.published * len(subs) - got,
        }

    result["latency"] = []
    loads = (
        [("fixed", args.fixed_rate)]
        if args.fixed_rate
        else [(f, max_rate * f / len(subs)) for f in args.latency_fracs]
    )
    if args.slow_rate and not args.fixed_rate:
        loads.append(("slow", args.slow_rate))
    for label, pub_rate in loads:
        sampling = subs if label in EVERY_SUBSCRIBER_SAMPLES else samplers
        for s in sampling:
            s.samples = []
        pubs[0].count_replies(ignore_reply)
        base = delivered()
        meter.start()
        t0 = time.monotonic()
        sent = await paced(pubs[0], target.dialect, pub_rate, args.measure)
        secs = time.monotonic() - t0
        meter.stop()
        got = await drain(delivered, base + sent * len(subs), 10 * UNIT)
        row: dict[str, Any] = {
            "load": label,
            "publishes_per_s": sent / secs,
            "deliveries_per_s": (got - base) / secs,
            **cpu_fields(meter, secs, got - base),
            "undelivered_after_drain": base + sent * len(subs) - got,
            "deliveries": got - base,
            "sampling_subscribers": len(sampling),
        }
        taken = [(s.group, s.latencies()) for s in sampling]  # each stops sampling
        row["all"] = latency_summary([x for _, found in taken for x in found])
        if len(target.addrs) > 1:
            row["by_instance"] = [
                latency_summary([x for group, found in taken if group == g for x in found])
                for g in range(len(target.addrs))
            ]
        result["latency"].append(row)
    close_all(subs + pubs)
    return result


# request/response -----------------------------------------------------------------------------
async def reqrep(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    meter = CpuMeter(args.server_pids, args.cores)
    clients = await target.connect(args.clients)
    dialect = target.dialect
    samples: list[int] = []
    state = {"measuring": False, "running": True, "rid": 0}
    channels = {id(c): f"room:rr{id(c)}" for c in clients}

    if args.action == "ping" and dialect.ping(0) is None:
        raise SystemExit(f"reqrep --action ping: the {dialect.name} dialect has no ping request")
    ping = args.action == "ping"

    def send(c: Session) -> None:
        state["rid"] += 1
        c.intended.append(time.monotonic_ns())
        c.send(dialect.ping(state["rid"]) if ping else dialect.request(channels[id(c)], state["rid"]))  # type: ignore[arg-type]

    def closed_loop(c: Session) -> None:
        sent_at = c.intended.popleft()
        if state["measuring"]:
            samples.append(time.monotonic_ns() - sent_at)
        if state["running"]:
            send(c)

    for c in clients:
        c.count_replies(closed_loop)
        send(c)
    await asyncio.sleep(args.warmup)
    state["measuring"] = True
    n, secs = await window(meter, 0, args.measure, lambda: sum(c.count for c in clients))
    state["measuring"] = False
    state["running"] = False
    await drain(lambda: sum(len(c.intended) == 0 for c in clients), len(clients), 10 * UNIT)
    max_rate = n / secs
    result: dict[str, Any] = {
        "clients": len(clients),
        "closed_loop": {
            "round_trips_per_s": max_rate,
            **cpu_fields(meter, secs, n),
            "latency": latency_summary(samples),
        },
        "paced": [],
    }

    for frac in args.paced_fracs:
        base = sum(c.count for c in clients)
        meter.start()
        t0 = time.monotonic()
        samples = await paced_round_trips(clients, send, max_rate * frac, args.measure)
        secs = time.monotonic() - t0
        meter.stop()
        n = sum(c.count for c in clients) - base
        result["paced"].append(
            {
                "fraction": frac,
                "round_trips_per_s": n / secs,
                **cpu_fields(meter, secs, n),
                "latency": latency_summary(samples),
            }
        )
    close_all(clients)
    return result


async def paced_round_trips(
    clients: list[Session], send: Callable[[Session], None], rate: float, seconds: float
) -> list[int]:
    """Open loop: every client sends on its own fixed schedule, whether or not its last answer came.

    Client ``i`` of ``n`` sends at ``start + (i / n + k) * n / rate``; each answer is matched to the
    oldest unanswered send of its connection (servers answer a connection's requests in order).
    """
    loop = asyncio.get_running_loop()
    interval = len(clients) / rate
    samples: list[int] = []
    start = loop.time()
    stop_at = start + seconds

    def on_reply(c: Session) -> None:
        samples.append(time.monotonic_ns() - c.intended.popleft())

    def tick(c: Session, due: float) -> None:
        if due < stop_at:
            send(c)
            loop.call_at(due + interval, tick, c, due + interval)

    for i, c in enumerate(clients):
        c.count_replies(on_reply)
        due = start + interval * i / len(clients)
        loop.call_at(due, tick, c, due)
    await asyncio.sleep(seconds)
    await drain(lambda: sum(len(c.intended) == 0 for c in clients), len(clients), 10 * UNIT)
    return samples


# idle capacity --------------------------------------------------------------------------------
async def idle(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    pid = args.server_pids[0]
    meter = CpuMeter(args.server_pids, args.cores)
    rss0 = rss_kib(pid)
    meter.start()
    t0 = time.monotonic()
    conns = await target.connect(args.conns)
    secs = time.monotonic() - t0
    meter.stop()
    rss1 = rss_kib(pid)
    await asyncio.sleep(args.hold)
    rss2 = rss_kib(pid)
    alive = sum(not c.closed for c in conns)
    close_all(conns)
    return {
        "conns": len(conns),
        "jwt": bool(target.secret),
        "handshakes_per_s": len(conns) / secs,
        "handshake_server_cpu_pct": 100 * meter.server_s / secs,
        "handshake_loadgen_cpu_pct": 100 * meter.loadgen_s / secs,
        "handshakes_per_server_cpu_s": len(conns) / meter.server_s if meter.server_s else float("nan"),
        "handshake_core_busy_pct": meter.core_busy_pct,
        "rss_before_kib": rss0,
        "rss_connected_kib": rss1,
        "rss_after_hold_kib": rss2,
        "kib_per_conn": (rss2 - rss0) / max(1, len(conns)),
        "alive_after_hold": alive,
        "hold_s": args.hold,
    }


WORKLOADS = {"fanout": fanout, "reqrep": reqrep, "idle": idle}


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _floats_or_ints(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda s: [kind(x) for x in s.split(",") if x]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--urls", required=True, help="host:port[,host:port]: subscribers spread over them")
    p.add_argument("--dialect", choices=sorted(DIALECTS), default="wsforge")
    p.add_argument("--path", default="/ws")
    p.add_argument("--server-pids", type=lambda s: [int(x) for x in s.split(",")], required=True)
    p.add_argument("--cores", type=_floats_or_ints(int), default=[], help="cores to report busy %% for")
    p.add_argument("--jwt-secret", default="")
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--measure", type=float, default=8.0)
    p.add_argument("--subs", type=int, default=1000)
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--window", type=int, default=64, help="publishes in flight end to end")
    p.add_argument(
        "--sample-every",
        type=_at_least_one,
        default=10,
        help="fan-out: every Nth subscriber of an instance samples latency; the rest count deliveries per read",
    )
    p.add_argument("--latency-fracs", type=_floats_or_ints(float), default=[0.5])
    p.add_argument("--slow-rate", type=float, default=20.0, help="publishes/s of the single slow publisher")
    p.add_argument("--fixed-rate", type=float, default=0.0, help="skip saturation; publish at this rate")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument(
        "--action",
        choices=["publish", "ping"],
        default="publish",
        help="reqrep: a publish to a channel nobody reads, or the protocol's ping (wsforge dialect)",
    )
    p.add_argument("--paced-fracs", type=_floats_or_ints(float), default=[0.1, 0.5])
    p.add_argument("--conns", type=int, default=10_000)
    p.add_argument("--hold", type=float, default=10.0, help="idle seconds after connecting (heartbeats run)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError):
        pass
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
        loop_name = "uvloop"
    except ImportError:
        runner, loop_name = asyncio.run, "asyncio"
    target = Target(args)
    t0 = time.monotonic()
    result = runner(WORKLOADS[args.workload](args, target))
    result.update(
        workload=args.workload, dialect=args.dialect, loadgen_loop=loop_name, wall_s=time.monotonic() - t0
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
