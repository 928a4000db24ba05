"""Reconnect storm: every client of a deploy reconnects at once and resumes from its last seq.

    python bench/storm.py                                    # 10,000 clients, this checkout
    python bench/storm.py --checkout /path/to/old/checkout --label before
    python bench/storm.py --clients 1000 --label smoke      # a quick look

What it does, bounded in every phase (timeouts scale with ``BENCH_UNIT``), then exits:

1. Renders ``examples/notifications.yaml`` (picows transport, Redis Streams, JWT) from
   ``--checkout`` (default: this one) into ``bench/.work/storm-<label>``; starts a throwaway
   ``redis-server`` on a free port and ``--instances`` servers (``python -m notify_hub``), each
   pinned with the Redis to core 0 (``taskset``); this process and the publisher run on core 1.
2. Connects ``--clients`` picows clients over the instances (user ``u<i>``); each subscribes to
   its own ``user:u<i>`` and to ``broadcast:all``. A publisher process (the project's own
   ``Publisher``, straight into Redis) publishes ``--user-rate`` messages/s to random users and
   ``--broadcast-rate``/s to ``broadcast:all`` from here to the end.
3. Deploy: SIGTERM every instance (they close their clients 1001), start new ones on the same
   ports, wait for ``/readyz``. From then (t0) every client reconnects at once (at most
   ``--concurrency`` handshakes in flight) and resubscribes both channels with the ``since_seq``
   and ``epoch`` it last saw. **Storm time** = t0 until the last client has both answers.
4. Publishing goes on for 2 s, stops; every client must then hold every message of its channels
   from its first subscribe to the publisher's last ``seq``: **lost** (must be 0), **duplicated**
   and ``resync`` notices are counted per client channel.

Redis's own counters between t0 and the last answer (``INFO stats``): ``total_reads_processed``
(one per read of a client socket, so one per round trip whatever a pipeline holds: the round
trips of the servers' subscribes, plus at most one per publish of the publisher meanwhile, which is
reported) and ``total_commands_processed`` (commands run inside scripts count too), per subscribe.
Server CPU seconds over the same window come from /proc. One JSON object goes to stdout and to
``bench/.work/storm-<label>.json``.

``--broker-only`` measures the broker's share alone, without sockets or handshakes: one process
with the rendered project's broker (circuit breaker and Redis adapter, as a server builds them)
runs ``--waves`` waves of ``--clients`` concurrent first subscribes plus history reads (what a
server's subscribe asks of the broker), and reports its CPU per subscribe and Redis's reads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "loadgen"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from procs import free_port, stop
from stats import cpu_times, percentile

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
UNIT = float(os.environ.get("BENCH_UNIT", "1"))
SECRET = "storm-bench-secret-long-enough-for-hs256-signing"  # noqa: S105 - a throwaway bench key
BROADCAST = "broadcast:all"
SERVER_CORE, CLIENT_CORE = 0, 1
_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE

PUBLISHER = """
import asyncio, json, random, sys
from notify_hub.broker import BrokerError
from notify_hub.publisher import Publisher

async def main(clients: int, user_rate: float, broadcast_rate: float) -> None:
    last: dict[str, int] = {}
    published = failed = 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)
    tick, owed_user, owed_broadcast = 0.01, 0.0, 0.0
    async with Publisher.from_env() as pub:
        print("ready", flush=True)
        while not stop.is_set():
            owed_user += user_rate * tick
            owed_broadcast += broadcast_rate * tick
            channels = []
            while owed_user >= 1:
                owed_user -= 1
                channels.append(f"user:u{random.randrange(clients)}")
            while owed_broadcast >= 1:
                owed_broadcast -= 1
                channels.append("broadcast:all")
            for channel in channels:
                try:
                    result = await pub.publish(channel, {"n": published})
                except BrokerError:
                    failed += 1  # nothing stored: not a message anyone must receive
                    continue
                published += 1
                last[channel] = max(last.get(channel, 0), result.message.seq)
            await asyncio.sleep(tick)
    print(json.dumps({"last": last, "published": published, "failed": failed}), flush=True)

asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])))
"""


BROKER_ONLY = """
import asyncio, json, sys, time, uuid
from notify_hub.broker import ChannelOptions, create_broker

OPTIONS = ChannelOptions(durable=True, history_size=500, history_ttl_s=604800)  # the user namespace
SHARED = ChannelOptions(durable=True, history_size=1000)  # a broadcast channel every client resumes

async def main(url: str, n: int, waves: int, backlog: int) -> None:
    broker = create_broker(url, prefix="b" + uuid.uuid4().hex[:8], op_timeout_s=2.0, pool_size=200,
                           circuit_breaker={"failure_threshold": 5, "reset_timeout_s": 5.0})
    await broker.start(lambda message: None)

    async def subscribe(channel: str, i: int) -> None:
        await broker.subscribe(channel)
        await broker.history(channel, 0, OPTIONS, limit=100)
        if backlog:  # resume the shared channel from one of the last ``backlog`` positions
            await broker.history("broadcast:all", i % backlog, SHARED, limit=1000)

    for k in range(backlog):
        await broker.publish("broadcast:all", {"n": k}, SHARED)
    await subscribe("user:warm", 0)
    print("ready", flush=True)
    sys.stdin.readline()
    cpu, wall = time.process_time(), time.perf_counter()
    for wave in range(waves):
        await asyncio.gather(*(subscribe(f"user:w{wave}u{i}", i) for i in range(n)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"cpu_s": cpu, "wall_s": wall}), flush=True)
    await broker.aclose()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


def broker_only(args: argparse.Namespace, project: Path, work: Path) -> dict[str, Any]:
    with redis_server(work / "redis.log") as (redis_url, redis_port):
        proc = subprocess.Popen(
            pinned(
                SERVER_CORE,
                [
                    sys.executable,
                    "-c",
                    BROKER_ONLY,
                    redis_url,
                    str(args.clients),
                    str(args.waves),
                    str(args.backlog),
                ],
            ),
            env={**os.environ, "PYTHONPATH": str(project / "src")},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        before = redis_info(redis_port)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=300 * UNIT)
        after = redis_info(redis_port)
    measured = json.loads(out.strip().splitlines()[-1])
    subscribes = args.clients * args.waves
    return {
        "label": args.label,
        "mode": "broker-only",
        "concurrent": args.clients,
        "shared_backlog": args.backlog,
        "subscribes": subscribes,
        "wall_s": round(measured["wall_s"], 3),
        "cpu_us_per_subscribe": round(1e6 * measured["cpu_s"] / subscribes, 1),
        "subscribes_per_cpu_s": round(subscribes / measured["cpu_s"]),
        "redis_reads_per_subscribe": round((after["reads"] - before["reads"]) / subscribes, 3),
    }


# processes ------------------------------------------------------------------------------------
def render(checkout: Path, out: Path) -> Path:
    """The notifications example rendered by ``checkout``'s wsforge (its templates, its code)."""
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "wsforge",
            "new",
            "--answers",
            str(checkout / "examples" / "notifications.yaml"),
            "--non-interactive",
            "-o",
            str(out),
        ],
        # From the checkout: ``-m`` puts the working directory first on sys.path, so run anywhere
        # else, another checkout's wsforge (and its templates) would shadow this one.
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f} s")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def redis_server(log: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with log.open("ab") as out:
        proc = subprocess.Popen(pinned(SERVER_CORE, argv), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: listening(port), 10 * UNIT, "redis-server not listening")
        yield f"redis://127.0.0.1:{port}/0", port
    finally:
        stop(proc, 5 * UNIT)


def redis_info(port: int) -> dict[str, int]:
    """``INFO stats`` and ``commandstats`` counters over a bare socket (no client library)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"INFO everything\r\n")
        data = b""
        while True:
            data += s.recv(65536)
            head, _, rest = data.partition(b"\r\n")
            if head.startswith(b"$") and len(rest) >= int(head[1:]):
                break
    fields = dict(line.split(":", 1) for line in rest.decode().splitlines() if ":" in line)
    counts = {
        "reads": int(fields["total_reads_processed"]),
        "commands": int(fields["total_commands_processed"]),
    }
    for name, stat in fields.items():
        if name.startswith("cmdstat_"):  # calls=N,usec=...
            counts[name.removeprefix("cmdstat_")] = int(stat.split(",", 1)[0].removeprefix("calls="))
    return counts


class Instance:
    """One ``python -m notify_hub`` on a fixed port; stopped with SIGTERM like a deploy does."""

    def __init__(self, project: Path, port: int, redis_url: str, log: Path, extra_path: list[str]) -> None:
        self.project, self.port, self.redis_url, self.log = project, port, redis_url, log
        self.extra_path = extra_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            # --server-path: e.g. an optional speed-up (hiredis) tried without changing the project
            "PYTHONPATH": os.pathsep.join([str(self.project / "src"), *self.extra_path]),
            "WS_HOST": "127.0.0.1",
            "WS_PORT": str(self.port),
            "WS_BROKER_URL": self.redis_url,
            "WS_JWT_SECRET": SECRET,
            "WS_API_KEYS": "",
            "WS_RATE_PER_S": "10000000",
            "WS_RATE_BURST": "10000000",
            "WS_MAX_CONNECTIONS_PER_IP": "100000",
            "WS_MAX_CONNECTIONS_TOTAL": "100000",
            "WS_MAX_HANDSHAKES_PER_IP": "100000",
            "WS_OUTBOUND_QUEUE_SIZE": "1024",
            "WS_SHUTDOWN_GRACE_S": str(5 * UNIT),
            "WS_SHUTDOWN_DRAIN_S": "0",
            "WS_LOG_LEVEL": "WARNING",
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                pinned(SERVER_CORE, [sys.executable, "-m", "notify_hub"]),
                cwd=self.project,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: self._alive() and ready(self.port), 30 * UNIT, f"instance on {self.port} not ready")

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"instance exited: {self.log.read_text(errors='replace')[-2000:]}")
        return True

    def cpu_s(self) -> float:
        return sum(self.cpu())

    def cpu(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far."""
        assert self.proc is not None
        return cpu_times(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, 15 * UNIT)


def profile(instance: Instance, py_spy: str, work: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``instance`` from now until SIGINT, collapsed stacks into ``work``."""
    assert instance.proc is not None
    out = work / f"profile-{instance.port}.txt"
    argv = [py_spy, "record", "--pid", str(instance.proc.pid), "--rate", "250", "--format", "raw"]
    with (work / "py-spy.log").open("ab") as log:
        proc = subprocess.Popen(
            pinned(CLIENT_CORE, [*argv, "--nonblocking", "-o", str(out)]), stdout=log, stderr=log
        )
    time.sleep(0.5)  # attached before the storm starts
    return proc


# clients --------------------------------------------------------------------------------------
class Position:
    """What one client knows of one channel: where it started, the last seq, what went wrong."""

    __slots__ = ("dups", "epoch", "first", "gaps", "last", "unique")

    def __init__(self) -> None:
        self.first = -1
        self.last = 0
        self.epoch: str | None = None
        self.unique = 0
        self.dups = 0
        self.gaps = 0


class Client:
    """One user's state across its connections: positions, answers, timings."""

    def __init__(self, index: int, host: str, port: int) -> None:
        self.user = f"u{index}"
        self.url = f"ws://{host}:{port}/ws?access_token=" + jwt.encode(
            {"sub": self.user, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256"
        )
        self.channels = (f"user:{self.user}", BROADCAST)
        self.positions = {channel: Position() for channel in self.channels}
        self.answered: set[str] = set()
        self.subscribed: asyncio.Future[None] | None = None
        self.disconnected = asyncio.Event()
        self.connected_at = self.subscribed_at = 0.0
        self.errors: list[str] = []
        self.transport: WSTransport | None = None
        self.resyncs = 0
        self.unrecovered = 0

    def subscribe_frames(self, only: str | None = None) -> list[bytes]:
        frames = []
        for channel in self.channels if only is None else (only,):
            pos = self.positions[channel]
            frame: dict[str, Any] = {
                "v": 1,
                "type": "request",
                "action": "subscribe",
                "id": channel,
                "channel": channel,
            }
            if pos.first >= 0:  # a resume: from the last seq seen, in the epoch it was seen in
                frame["payload"] = {"since_seq": pos.last, "epoch": pos.epoch}
            frames.append(orjson.dumps(frame))
        return frames

    def on_frame(self, data: bytes) -> None:
        msg = orjson.loads(data)
        kind = msg.get("type")
        if kind == "event":
            action = msg.get("action")
            if action == "message":
                pos = self.positions.get(msg["channel"])
                if pos is not None:
                    seq = msg["seq"]
                    if seq <= pos.last:
                        pos.dups += 1
                    else:
                        if seq > pos.last + 1:
                            pos.gaps += 1
                        pos.last = seq
                        pos.unique += 1
            elif action == "resync":
                self.resyncs += 1
        elif kind == "response" and msg.get("action") == "subscribe":
            channel, payload = msg["channel"], msg["payload"]
            pos = self.positions[channel]
            if pos.first < 0:
                pos.first = pos.last = payload["seq"]
            elif not payload.get("recovered", False):
                self.unrecovered += 1
            pos.epoch = payload["epoch"]
            self.answered.add(channel)
            if len(self.answered) == len(self.channels):
                self.subscribed_at = time.monotonic()
                if self.subscribed is not None and not self.subscribed.done():
                    self.subscribed.set_result(None)
        elif kind == "error":
            # What the project's client does with broker_unavailable: ask again a little later.
            self.errors.append(str(msg.get("error")))
            channel = msg.get("id")
            if channel in self.positions:
                asyncio.get_running_loop().call_later(0.1, self.retry, channel)

    def retry(self, channel: str) -> None:
        if self.transport is not None and not self.disconnected.is_set():
            self.transport.send(_TEXT, self.subscribe_frames(only=channel)[0])


class Listener(WSListener):
    def __init__(self, client: Client) -> None:
        self.client = client

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.client.connected_at = time.monotonic()
        self.client.transport = transport
        for frame in self.client.subscribe_frames():
            transport.send(_TEXT, frame)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _TEXT:
            self.client.on_frame(frame.get_payload_as_bytes())
        elif frame.msg_type == _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.client.disconnected.set()


async def connect_all(clients: list[Client], concurrency: int, timeout: float) -> None:
    """Connect and (re)subscribe every client, at most ``concurrency`` handshakes in flight; a
    client whose handshake fails (backlog full, refused) retries until ``timeout``."""
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    async def one(client: Client) -> None:
        client.answered.clear()
        client.disconnected.clear()
        client.subscribed = loop.create_future()
        while True:
            try:
                async with sem:
                    await asyncio.wait_for(
                        ws_connect(lambda: Listener(client), client.url, websocket_handshake_timeout=timeout),
                        timeout,
                    )
                break
            except (TimeoutError, OSError) as exc:
                if loop.time() > deadline:
                    raise TimeoutError(f"{client.user} could not connect: {exc!r}") from exc
                await asyncio.sleep(0.05)
        await asyncio.wait_for(client.subscribed, max(0.1, deadline - loop.time()))

    await asyncio.gather(*(one(c) for c in clients))


# the run --------------------------------------------------------------------------------------
async def storm(args: argparse.Namespace, project: Path, work: Path) -> dict[str, Any]:
    ports = [free_port() for _ in range(args.instances)]
    with redis_server(work / "redis.log") as (redis_url, redis_port):
        instances = [
            Instance(project, port, redis_url, work / f"instance-{i}.log", args.server_path)
            for i, port in enumerate(ports)
        ]
        publisher: subprocess.Popen[str] | None = None
        try:
            for instance in instances:
                instance.start()
            clients = [Client(i, "127.0.0.1", ports[i % len(ports)]) for i in range(args.clients)]
            t = time.monotonic()
            await connect_all(clients, args.concurrency, 120 * UNIT)
            first_connect_s = time.monotonic() - t
            publisher = subprocess.Popen(
                pinned(
                    CLIENT_CORE,
                    [
                        sys.executable,
                        "-c",
                        PUBLISHER,
                        str(args.clients),
                        str(args.user_rate),
                        str(args.broadcast_rate),
                    ],
                ),
                env={**os.environ, "PYTHONPATH": str(project / "src"), "WS_BROKER_URL": redis_url},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert publisher.stdout is not None
            line = await asyncio.to_thread(publisher.stdout.readline)
            assert line.strip() == "ready", line
            await asyncio.sleep(args.steady_s)

            # The deploy: every instance stops (closing its clients), new ones start on the same ports.
            t = time.monotonic()
            for instance in instances:
                assert instance.proc is not None
                instance.proc.send_signal(signal.SIGTERM)
            for instance in instances:
                await asyncio.to_thread(instance.stop)
            async with asyncio.timeout(30 * UNIT):
                for client in clients:
                    await client.disconnected.wait()
            for instance in instances:
                await asyncio.to_thread(instance.start)
            downtime_s = time.monotonic() - t

            # The storm.
            redis_before = redis_info(redis_port)
            cpu_before = [instance.cpu() for instance in instances]
            profilers = (
                [profile(instance, args.profile, work) for instance in instances[:1]] if args.profile else []
            )
            t0, client_cpu = time.monotonic(), time.process_time()
            await connect_all(clients, args.concurrency, 180 * UNIT)
            storm_s = time.monotonic() - t0
            client_cpu = time.process_time() - client_cpu
            for profiler in profilers:
                profiler.send_signal(signal.SIGINT)
                await asyncio.to_thread(profiler.wait, 30 * UNIT)
            redis_after = redis_info(redis_port)
            cpu_after = [instance.cpu() for instance in instances]

            await asyncio.sleep(2.0)
            assert publisher.stdin is not None
            publisher.stdin.write("stop\n")
            publisher.stdin.flush()
            out, _ = await asyncio.to_thread(publisher.communicate, timeout=30 * UNIT)
            published = json.loads(out.strip().splitlines()[-1])
            publisher = None
            final: dict[str, int] = published["last"]

            def expected(pos: Position, channel: str) -> int:
                return max(final.get(channel, 0), pos.first)

            def caught_up() -> bool:
                return all(
                    pos.last >= expected(pos, channel)
                    for c in clients
                    for channel, pos in c.positions.items()
                )

            async with asyncio.timeout(30 * UNIT):
                while not caught_up():
                    await asyncio.sleep(0.1)
                    if sum(c.disconnected.is_set() for c in clients) > 0:
                        break
            lost = dups = gaps = 0
            for c in clients:
                for channel, pos in c.positions.items():
                    lost += max(0, expected(pos, channel) - pos.first - pos.unique)
                    dups += pos.dups
                    gaps += pos.gaps
            setup = sorted(c.subscribed_at - c.connected_at for c in clients)
            subscribes = 2 * len(clients)
            reads = redis_after["reads"] - redis_before["reads"]
            commands = redis_after["commands"] - redis_before["commands"]
            calls = {
                name: redis_after[name] - redis_before.get(name, 0)
                for name in sorted(redis_after)
                if name not in ("reads", "commands") and redis_after[name] != redis_before.get(name, 0)
            }
            server_user = sum(a[0] - b[0] for a, b in zip(cpu_after, cpu_before, strict=True))
            server_sys = sum(a[1] - b[1] for a, b in zip(cpu_after, cpu_before, strict=True))
            server_cpu = server_user + server_sys
            return {
                "label": args.label,
                "clients": len(clients),
                "instances": len(instances),
                "first_connect_s": round(first_connect_s, 2),
                "deploy_downtime_s": round(downtime_s, 2),
                "storm_s": round(storm_s, 3),
                "resubscribed": sum(1 for c in clients if c.subscribed is not None and c.subscribed.done()),
                "subscribe_after_connect_p50_ms": round(1000 * percentile(setup, 50), 1),
                "subscribe_after_connect_p99_ms": round(1000 * percentile(setup, 99), 1),
                "server_cpu_s": round(server_cpu, 2),
                "server_cpu_ms_per_client": round(1000 * server_cpu / len(clients), 3),
                "server_user_s": round(server_user, 2),
                # This process (the 10,000 clients, one core): near storm_s, the clients set the pace.
                "client_cpu_s": round(client_cpu, 2),
                "load_average_1m": os.getloadavg()[0],
                "server_sys_s": round(server_sys, 2),
                "redis_reads": reads,
                "redis_reads_per_subscribe": round(reads / subscribes, 3),
                "redis_commands": commands,
                "redis_commands_per_subscribe": round(commands / subscribes, 2),
                "redis_calls": calls,
                "published": published["published"],
                "publish_failures": published["failed"],
                "publish_rate_per_s": args.user_rate + args.broadcast_rate,
                "lost": lost,
                "duplicated": dups,
                "gaps_seen": gaps,
                "resync_notices": sum(c.resyncs for c in clients),
                "unrecovered_resumes": sum(c.unrecovered for c in clients),
                "errors": sum(len(c.errors) for c in clients),
                "first_errors": [e for c in clients for e in c.errors][:5],
                "disconnected_at_end": sum(c.disconnected.is_set() for c in clients),
            }
        finally:
            if publisher is not None:
                publisher.kill()
            for instance in instances:
                instance.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--checkout", type=Path, default=ROOT, help="the wsforge checkout that renders the project"
    )
    p.add_argument("--label", default="current", help="names the work dir and the result file")
    p.add_argument("--clients", type=int, default=10_000)
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=1000, help="handshakes in flight at most")
    p.add_argument("--user-rate", type=float, default=200.0, help="publishes/s to random user channels")
    p.add_argument("--broadcast-rate", type=float, default=1.0, help="publishes/s to broadcast:all")
    p.add_argument("--steady-s", type=float, default=2.0, help="publishing before the deploy")
    p.add_argument(
        "--profile", metavar="PY_SPY", help="py-spy executable: sample the first instance during the storm"
    )
    p.add_argument(
        "--server-path", action="append", default=[], help="a directory added to the servers' PYTHONPATH"
    )
    p.add_argument("--broker-only", action="store_true", help="the broker's share alone (see above)")
    p.add_argument("--waves", type=int, default=10, help="--broker-only: waves of --clients subscribes")
    p.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="--broker-only: each subscribe also resumes broadcast:all from one of its last N messages",
    )
    args = p.parse_args()
    work = WORK / f"storm-{args.label}"
    work.mkdir(parents=True, exist_ok=True)
    for log in work.glob("*.log"):
        log.unlink()
    project = render(args.checkout.resolve(), work / "project")
    os.sched_setaffinity(0, {CLIENT_CORE})
    if args.broker_only:
        result = broker_only(args, project, work)
    else:
        runner: Any = asyncio.run
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        result = runner(storm(args, project, work))
    text = json.dumps(result, indent=2)
    (WORK / f"storm-{args.label}.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
