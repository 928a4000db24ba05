"""What the server API costs: publishes per server CPU-second, and latency added over a client publish.

    python bench/api_bench.py                      # 3 repeats, 5 s windows, results as a table
    python bench/api_bench.py --repeats 1 --json   # one repeat, machine-readable

A backend that publishes through ``POST /api/publish`` pays an HTTP request (parse, key check,
JSON body) where a connected client pays one WebSocket frame. This measures both against the same
generated server (``examples/chat.yaml`` with ``publishers: [browser, backend]``, so the API is on
and the ``room`` namespace accepts client publishes), pinned to one core, with one subscriber on
the channel so that every publish is also a delivery:

- **throughput**: ``--concurrency`` closed-loop publishers (keep-alive HTTP connections, or
  WebSocket connections awaiting each ack) for ``--seconds``; publishes per second and per server
  CPU-second.
- **latency**: one publish at a time, ``--samples`` of each kind, timed from just before the send
  to the subscriber's receipt (both ends in this process, one monotonic clock); p50 and p99.

The server runs on core 1 (``taskset``), this process on core 0. Loopback only; every phase is
bounded and the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH / "loadgen"))

import aiohttp  # noqa: E402
import yaml  # noqa: E402
from conn import Session, open_conn  # noqa: E402
from main import tokens  # noqa: E402
from stats import CpuMeter  # noqa: E402
from subjects import generated_env  # noqa: E402
from wire import DIALECTS, publish_payload  # noqa: E402

CHANNEL = "room:bench"
API_KEY = "bench-api-key-0123456789abcdef"
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123"  # noqa: S105 - a throwaway loopback secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(out: Path) -> tuple[Path, str]:
    """Render the chat example with a backend publisher into ``out``; returns (project, package)."""
    answers = yaml.safe_load((REPO / "examples" / "chat.yaml").read_text())
    answers["publishers"] = ["browser", "backend"]
    answers["project_name"] = "api-bench"
    scratch = Path(tempfile.mkdtemp(prefix="api-bench-"))
    answers_file = scratch / "answers.yaml"
    answers_file.write_text(yaml.safe_dump(answers))
    project = out / "api-bench"
    cmd = [sys.executable, "-m", "wsforge", "new", "--answers", str(answers_file), "--non-interactive",
           "--output", str(project), "--force"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(cmd, cwd=scratch, check=True, capture_output=True, timeout=300, env=env)
    spec = yaml.safe_load((project / "wsforge.yaml").read_text())
    if not spec.get("server_api", {}).get("enabled"):
        raise SystemExit(f"{project}: rendered without the server API; see wsforge.yaml")
    package = next(p.name for p in sorted((project / "src").iterdir()) if (p / "__main__.py").exists())
    return project, package


def start_server(project: Path, package: str, ws_port: int, api_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **generated_env(JWT_SECRET, 30.0),
        "PYTHONPATH": str(project / "src"),
        "WS_API_KEYS": API_KEY,
        "WS_API_PORT": str(api_port),
        "WS_API_HOST": "127.0.0.1",
    }
    argv = [
        "taskset",
        "-c",
        "1",
        sys.executable,
        "-m",
        package,
        "--host",
        "127.0.0.1",
        "--port",
        str(ws_port),
    ]
    proc = subprocess.Popen(argv, env=env, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    for port in (ws_port, api_port):
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"server did not listen on {port} within 20 s") from None
                time.sleep(0.05)
    return proc


class Bench:
    def __init__(self, ws_port: int, api_port: int, pid: int, args: argparse.Namespace) -> None:
        self.dialect = DIALECTS["wsforge"]
        self.ws_port = ws_port
        self.api_url = f"http://127.0.0.1:{api_port}/api/publish"
        self.pid = pid
        self.args = args
        self.rid = 0

    async def connect(self, n: int, first_user: int) -> list[Session]:
        toks = tokens(JWT_SECRET, first_user + n)[first_user:]
        return [
            await open_conn(self.dialect, "127.0.0.1", self.ws_port, self.dialect.path("/ws", t), 10.0)
            for t in toks
        ]

    async def subscriber(self) -> Session:
        (sub,) = await self.connect(1, 0)
        await sub.call(self.dialect.subscribe(CHANNEL, 1), 10.0)
        sub.count_deliveries(lambda n: None)
        return sub

    async def api_publish(self, http: aiohttp.ClientSession) -> None:
        body = {"channel": CHANNEL, "data": publish_payload(time.monotonic_ns())}
        async with http.post(self.api_url, json=body, headers={"X-API-Key": API_KEY}) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"API publish answered {resp.status}")

    async def ws_publish(self, pub: Session) -> None:
        self.rid += 1
        await pub.call(self.dialect.publish(CHANNEL, self.rid, publish_payload(time.monotonic_ns())), 10.0)

    async def throughput(self, publish_one: Any, workers: int) -> dict[str, float]:
        """``workers`` closed loops for warm-up + window; publishes counted inside the window."""
        count = 0
        counting = False
        stop = False

        async def loop(i: int) -> None:
            nonlocal count
            while not stop:
                await publish_one(i)
                if counting:
                    count += 1

        tasks = [asyncio.create_task(loop(i)) for i in range(workers)]
        await asyncio.sleep(1.0)
        meter = CpuMeter([self.pid])
        counting, t0 = True, time.monotonic()
        meter.start()
        await asyncio.sleep(self.args.seconds)
        meter.stop()
        counting, seconds = False, time.monotonic() - t0
        stop = True
        await asyncio.wait_for(asyncio.gather(*tasks), 15.0)
        return {
            "per_s": count / seconds,
            "per_server_cpu_s": count / meter.server_s if meter.server_s else float("nan"),
            "server_cpu_pct": 100 * meter.server_s / seconds,
        }

    async def latency(self, sub: Session, publish_once: Any) -> list[float]:
        """Milliseconds from before each send to the subscriber's receipt, one publish at a time."""
        out: list[float] = []
        for _ in range(self.args.samples):
            sub.samples = []
            before = sub.count
            await publish_once()
            deadline = time.monotonic() + 5
            while sub.count == before:
                if time.monotonic() > deadline:
                    raise RuntimeError("a publish was not delivered within 5 s")
                await asyncio.sleep(0)
            out.extend(ns / 1e6 for ns in sub.latencies())
        return out

    async def run(self) -> dict[str, Any]:
        sub = await self.subscriber()
        workers = self.args.concurrency
        connector = aiohttp.TCPConnector(limit=workers)
        async with aiohttp.ClientSession(connector=connector) as http:
            api = await self.throughput(lambda i: self.api_publish(http), workers)
            api_lat = await self.latency(sub, lambda: self.api_publish(http))
        pubs = await self.connect(workers, 1)
        ws = await self.throughput(lambda i: self.ws_publish(pubs[i]), workers)
        ws_lat = await self.latency(sub, lambda: self.ws_publish(pubs[0]))
        for conn in [*pubs, sub]:
            conn.close()
        return {"api": {**api, **_summary(api_lat)}, "client": {**ws, **_summary(ws_lat)}}


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| repeat | API publishes/s | API per server CPU-s | client publishes/s | client per server CPU-s "
        "| API p50 / p99 ms | client p50 / p99 ms | added p50 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows, 1):
        a, c = r["api"], r["client"]
        lines.append(
            f"| {i} | {a['per_s']:,.0f} | {a['per_server_cpu_s']:,.0f} | {c['per_s']:,.0f} "
            f"| {c['per_server_cpu_s']:,.0f} | {a['p50_ms']:.3f} / {a['p99_ms']:.3f} "
            f"| {c['p50_ms']:.3f} / {c['p99_ms']:.3f} | {a['p50_ms'] - c['p50_ms']:+.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window per throughput pass")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop publishers per pass")
    parser.add_argument("--samples", type=int, default=500, help="latency samples per kind")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    parser.add_argument(
        "--project", type=Path, help="an already rendered api-bench project (skips rendering)"
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    work = BENCH / ".work"
    work.mkdir(exist_ok=True)
    if args.project:
        project = args.project
        package = next(p.name for p in sorted((project / "src").iterdir()) if (p / "__main__.py").exists())
    else:
        project, package = render(work)
    rows = []
    for _ in range(args.repeats):
        ws_port, api_port = free_port(), free_port()
        proc = start_server(project, package, ws_port, api_port)
        try:
            rows.append(asyncio.run(Bench(ws_port, api_port, proc.pid, args).run()))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
