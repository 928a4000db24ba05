"""N workers against one: ``python -m <package> --workers N`` on this box, same port, same Redis.

    python bench/workers_bench.py                    # workers 1 and 2, 3 repeats, full sizes
    python bench/workers_bench.py --quick            # smoke sizes, 1 repeat
    python bench/workers_bench.py --workers 1,2,4 --repeats 5 --project DIR

For each repeat and each worker count, back to back: a fresh throwaway Redis, a fresh server
(the chat example rendered for throughput: picows, scaled out over Redis, so its project ships the
Redis adapter; ``--project`` to bench another render), then the bench's load generator
(``loadgen/main.py``) for

* **fan-out**: ``--subs`` subscribers in one channel, 4 publishers saturating it (deliveries/s and
  deliveries per server CPU-second, the CPU of every worker counted), and
* **connections**: ``--conns`` JWT-verified idle connections (handshakes/s, handshakes per server
  CPU-second, and the RSS added per connection summed over the workers, sampled while they are held).

Placement: one worker is pinned to core 0 as in ``run.py`` (the load generator and Redis on core 1);
N workers get cores ``0..N-1`` (``taskset`` on the supervisor, inherited by the workers), so on a
2-core box the second worker shares core 1 with the load generator and Redis. The figures say what
N processes buy *here*; ``bench/bigbox/`` is for a box where the load generator has cores of its own.
Every step is bounded (timeouts) and the script exits by itself; JSON results go to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from procs import free_port, stop  # noqa: E402
from subjects import WORK, generated_env, render_chat  # noqa: E402

UNIT = float(os.environ.get("BENCH_UNIT", "1"))
JWT_SECRET = "bench-secret-0123456789abcdef-0123456789"  # noqa: S105 - loopback only; >= 32 bytes
LOADGEN_CORE = 1


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux ``/proc/<pid>/task/<pid>/children``)."""
    with contextlib.suppress(OSError):
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def redis(log: Path) -> Iterator[str]:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with log.open("ab") as out:
        proc = subprocess.Popen(["taskset", "-c", str(LOADGEN_CORE), *argv], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 10 * UNIT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc, 5 * UNIT)


@contextlib.contextmanager
def server(
    project: Path, workers: int, broker: str, log: Path, heartbeat: float
) -> Iterator[tuple[int, list[int]]]:
    """``python -m <package> --workers N`` pinned to cores 0..N-1; yields (port, serving pids)."""
    package = next(p.parent.name for p in (project / "src").glob("*/__main__.py"))
    port = free_port()
    env = {
        **os.environ,
        **generated_env(JWT_SECRET, heartbeat),
        "PYTHONPATH": str(project / "src"),
        "WS_TRANSPORT": os.environ.get("WS_TRANSPORT", "picows"),
        "WS_SHUTDOWN_GRACE_S": "2",
    }
    cores = ",".join(str(c) for c in range(workers))
    argv = ["taskset", "-c", cores, sys.executable, "-m", package, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--broker-url", broker, "--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30 * UNIT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workers} workers not serving after 30 s; see {log}")
            pids = [proc.pid] if workers == 1 else children(proc.pid)
            if len(pids) == workers and live_workers(port) == (workers if workers > 1 else None):
                break
            time.sleep(0.1)
        yield port, pids
    finally:
        stop(proc, 10 * UNIT)


def live_workers(port: int) -> int | None:
    """``ws_workers`` from ``/metrics`` (None without it: one process), or -1 while not answering."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as answer:
            text = answer.read().decode()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith("ws_workers "):
            return int(float(line.split()[1]))
    return None


def loadgen(args: list[str], port: int, pids: list[int], workers: int) -> dict[str, Any]:
    cores = ",".join(str(c) for c in sorted({*range(workers), LOADGEN_CORE}))
    cmd = [
        "taskset", "-c", str(LOADGEN_CORE), sys.executable, str(BENCH / "loadgen" / "main.py"), *args,
        "--urls", f"127.0.0.1:{port}", "--server-pids", ",".join(map(str, pids)), "--cores", cores,
        "--dialect", "wsforge", "--path", "/ws", "--jwt-secret", JWT_SECRET,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, timeout=300 * UNIT, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"load generator exited {proc.returncode}: {' | '.join(tail)}")
    result: dict[str, Any] = json.loads(proc.stdout)
    result["command"] = " ".join(cmd[3:])
    return result


def fanout(project: Path, workers: int, subs: int, window: list[str], logs: Path) -> dict[str, Any]:
    with (
        redis(logs / "redis.log") as broker,
        server(project, workers, broker, logs / f"server-{workers}.log", 3.0) as (
            port,
            pids,
        ),
    ):
        args = ["fanout", "--subs", str(subs), "--publishers", "4", "--window", "64"]
        args += ["--latency-fracs", "", "--slow-rate", "0", *window]
        result = loadgen(args, port, pids, workers)
    sat = result["saturated"]
    return {
        "deliveries_per_s": sat["deliveries_per_s"],
        "per_server_cpu_s": sat["per_server_cpu_s"],
        "server_cpu_pct": sat["server_cpu_pct"],
        "loadgen_cpu_pct": sat["loadgen_cpu_pct"],
        "core_busy_pct": sat["core_busy_pct"],
        "undelivered_after_drain": sat["undelivered_after_drain"],
        "command": result["command"],
    }


def connections(project: Path, workers: int, conns: int, hold: float, logs: Path) -> dict[str, Any]:
    with (
        redis(logs / "redis.log") as broker,
        server(project, workers, broker, logs / f"server-{workers}.log", 3.0) as (
            port,
            pids,
        ),
    ):
        before = sum(rss_kib(p) for p in pids)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], sum(rss_kib(p) for p in pids))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            args = ["idle", "--conns", str(conns), "--hold", str(hold), "--concurrency", "100"]
            result = loadgen(args, port, pids, workers)
        finally:
            done.set()
            sampler.join()
    return {
        "conns": result["conns"],
        "handshakes_per_s": result["handshakes_per_s"],
        "handshakes_per_server_cpu_s": result["handshakes_per_server_cpu_s"],
        "kib_per_conn_all_workers": (peak[0] - before) / max(1, result["conns"]),
        "alive_after_hold": result.get("alive_after_hold", result.get("alive")),
        "command": result["command"],
    }


def summary(runs: list[dict[str, Any]], workers: list[int]) -> str:
    rows = [
        "| workers | fan-out deliveries/s | deliveries per server CPU-s | server CPU % | loadgen CPU % | "
        "handshakes/s | handshakes per server CPU-s | KiB per idle conn (all workers) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in workers:
        mine = [r for r in runs if r["workers"] == n]

        def med(kind: str, key: str, rs: list[dict[str, Any]] = mine) -> float:
            return float(statistics.median(r[kind][key] for r in rs))

        rows.append(
            f"| {n} | {med('fanout', 'deliveries_per_s'):,.0f} | {med('fanout', 'per_server_cpu_s'):,.0f} | "
            f"{med('fanout', 'server_cpu_pct'):.0f} | {med('fanout', 'loadgen_cpu_pct'):.0f} | "
            f"{med('connections', 'handshakes_per_s'):,.0f} | {med('connections', 'handshakes_per_server_cpu_s'):,.0f} | "
            f"{med('connections', 'kib_per_conn_all_workers'):.1f} |"
        )
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2", help="worker counts to compare (comma-separated)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smoke sizes, 1 repeat")
    p.add_argument(
        "--project",
        type=Path,
        help="a rendered project with the Redis adapter (default: chat, picows, scale-out)",
    )
    p.add_argument("--subs", type=int, default=1000)
    p.add_argument("--conns", type=int, default=5000)
    p.add_argument("--out", type=Path, help="results JSON (default bench/.work/workers/<stamp>.json)")
    args = p.parse_args()
    workers = [int(x) for x in args.workers.split(",")]
    repeats = 1 if args.quick else args.repeats
    subs, conns, hold = (200, 500, 1.0) if args.quick else (args.subs, args.conns, 2.0)
    window = ["--warmup", "0.5", "--measure", "1.5"] if args.quick else ["--warmup", "1", "--measure", "3"]
    if args.project is None:
        args.project = render_chat(
            BENCH.parent, WORK / "chat-demo-picows-scale-out", transport="picows", scale_out=True
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = WORK / "workers" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    out = args.out or logs / "results.json"
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for n in workers:  # A/B back to back within a repeat
            print(f"repeat {repeat + 1}/{repeats}: {n} worker(s)", file=sys.stderr, flush=True)
            runs.append(
                {
                    "repeat": repeat,
                    "workers": n,
                    "fanout": fanout(args.project, n, subs, window, logs),
                    "connections": connections(args.project, n, conns, hold, logs),
                }
            )
    meta = {
        "stamp": stamp,
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "loadavg_at_end": os.getloadavg(),
        "project": str(args.project),
        "subs": subs,
        "conns": conns,
        "repeats": repeats,
        "command": " ".join(sys.argv),
    }
    out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    print(summary(runs, workers))
    print(f"\nresults: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
