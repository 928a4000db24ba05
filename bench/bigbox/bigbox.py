"""Figures for a box with 16+ cores: idle connections up to 1,000,000, fan-out with workers = cores.

    python bench/bigbox/bigbox.py --preflight-only          # what the box has and lacks, then exit
    sudo python bench/bigbox/bigbox.py --apply-sysctls      # raise the kernel limits it checks, then run
    python bench/bigbox/bigbox.py                           # everything, unattended, <= --budget-min
    python bench/bigbox/bigbox.py --smoke                   # tiny sizes (any box, ~2 min): does it all run?

Unattended and self-stopping: every phase is a bounded list of steps, every subprocess has a
timeout, a wall-clock budget (``--budget-min``, default 120) skips what no longer fits, and the
idle ladder stops at the first level that fails (a load generator error, or fewer than 99 % of the
connections still open after the hold). Results go to ``bench/bigbox/results-<stamp>.json`` and
``.md`` (written after every step, so a run cut short keeps what it measured).

**Placement.** The first half of the cores (``--server-cores``) run the server, the rest the load
generators and Redis. Fan-out runs the chat example (picows, Redis, the compiled build when
``--mypyc``) with 1 worker and with one worker per server core, same subscribers, back to back.

**A million connections from one box.** One TCP client address reaches one server address and port
through at most ~64,000 ephemeral ports. The load generator connects without binding a source
address, so the ladder spreads the connections over destination addresses instead: the server
listens on ``0.0.0.0`` (every ``127.0.0.x`` is loopback on Linux) and load generator ``k`` connects
to ``127.0.0.(k+1)`` with at most ``--per-loadgen`` (50,000) connections; the kernel's 4-tuples are
then all distinct, as with many source addresses. Do not run it on a box whose port is reachable
from outside (or firewall ``--port``).

**Limits it checks** (``--apply-sysctls`` sets the kernel ones; the open-files hard limit must
come from the shell or the unit, e.g. ``ulimit -Hn 2100000`` as root before starting):

- ``fs.nr_open`` and ``fs.file-max`` >= 2,100,000 (each connection is a socket on both sides);
  the hard ``RLIMIT_NOFILE`` of this process >= the per-process need (inherited by every child);
- ``net.ipv4.ip_local_port_range`` = ``1024 65535``;
- ``net.core.somaxconn`` and ``net.ipv4.tcp_max_syn_backlog`` >= 4096 (the server's backlog);
- ``net.netfilter.nf_conntrack_max`` >= 2,100,000 when conntrack is loaded;
- memory: a level runs only if ~48 KiB per connection (server + client + kernel buffers) fits in
  80 % of ``MemAvailable``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BIGBOX = Path(__file__).resolve().parent
BENCH = BIGBOX.parent
sys.path.insert(0, str(BENCH))

from procs import free_port, stop  # noqa: E402
from subjects import WORK, compiled_copy, generated_env, render_chat  # noqa: E402
from workers_bench import children, redis, rss_kib  # noqa: E402

JWT_SECRET = "bench-secret-0123456789abcdef-0123456789"  # noqa: S105 - loopback only
KIB_PER_CONN_BUDGET = 48
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - the idle ladder reaches it as 127.0.0.x (module docstring)
NEED_FILES = 2_100_000
SYSCTLS: dict[str, tuple[str, Any]] = {
    # name -> (kind, wanted): "min" = at least, "eq" = exactly
    "fs.nr_open": ("min", NEED_FILES),
    "fs.file-max": ("min", NEED_FILES),
    "net.ipv4.ip_local_port_range": ("eq", "1024 65535"),
    "net.core.somaxconn": ("min", 4096),
    "net.ipv4.tcp_max_syn_backlog": ("min", 4096),
    "net.netfilter.nf_conntrack_max": ("min", NEED_FILES),
}


class Budget:
    def __init__(self, minutes: float) -> None:
        self.end = time.monotonic() + 60 * minutes

    def left(self) -> float:
        return self.end - time.monotonic()


def read_sysctl(name: str) -> str | None:
    path = Path("/proc/sys") / name.replace(".", "/")
    with contextlib.suppress(OSError):
        return " ".join(path.read_text().split())
    return None


def preflight(apply: bool) -> dict[str, Any]:
    """What the box has against what the ladder needs; ``apply`` writes the missing sysctls (root)."""
    found: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "sysctls": {}, "problems": []}
    for name, (kind, wanted) in SYSCTLS.items():
        value = read_sysctl(name)
        if value is None:
            found["sysctls"][name] = "absent"
            continue
        ok = value == wanted if kind == "eq" else int(value.split()[0]) >= int(wanted)
        if not ok and apply:
            subprocess.run(["sysctl", "-w", f"{name}={wanted}"], check=False, capture_output=True, timeout=10)
            value = read_sysctl(name)
            ok = value == wanted if kind == "eq" else int(str(value).split()[0]) >= int(wanted)
        found["sysctls"][name] = value
        if not ok:
            found["problems"].append(f"{name} = {value}, want {'>= ' if kind == 'min' else ''}{wanted}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    found["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)
    if found["nofile"][0] < 1_100_000:
        found["problems"].append(
            f"open files limit {found['nofile'][0]}: the 1,000,000 level needs ~1,100,000 (ulimit -Hn)"
        )
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    found["mem_available_kib"] = int(meminfo["MemAvailable"].split()[0])
    found["max_conns_by_memory"] = int(0.8 * found["mem_available_kib"] / KIB_PER_CONN_BUDGET)
    return found


def start_server(
    project: Path, workers: int, cores: list[int], broker: str, log: Path, host: str, port: int
) -> tuple[subprocess.Popen[bytes], list[int]]:
    package = next(p.parent.name for p in (project / "src").glob("*/__main__.py"))
    env = {
        **os.environ,
        **generated_env(JWT_SECRET, 30.0),
        "PYTHONPATH": str(project / "src"),
        "WS_TRANSPORT": "picows",
        "WS_MAX_CONNECTIONS_PER_IP": "2000000",
        "WS_MAX_CONNECTIONS_TOTAL": "2000000",
        "WS_MAX_HANDSHAKES_TOTAL": "100000",
        "WS_SHUTDOWN_GRACE_S": "10",
    }
    argv = ["taskset", "-c", ",".join(map(str, cores)), sys.executable, "-m", package]
    argv += ["--host", host, "--port", str(port), "--broker-url", broker, "--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}; see {log}")
        pids = [proc.pid] if workers == 1 else children(proc.pid)
        if len(pids) == workers:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(1.0 if workers > 1 else 0.2)  # the last workers finish binding
                return proc, pids
        time.sleep(0.1)
    stop(proc, 15)
    raise TimeoutError(f"{workers} workers not up after 60 s; see {log}")


def loadgen_cmd(core: int, args: list[str], url: str, pids: list[int], cores: str) -> list[str]:
    return [
        "taskset", "-c", str(core), sys.executable, str(BENCH / "loadgen" / "main.py"), *args,
        "--urls", url, "--server-pids", ",".join(map(str, pids)), "--cores", cores,
        "--dialect", "wsforge", "--path", "/ws", "--jwt-secret", JWT_SECRET,
    ]  # fmt: skip


def fanout_step(
    project: Path,
    workers: int,
    subs: int,
    server_cores: list[int],
    lg_cores: list[int],
    logs: Path,
    window: list[str],
) -> dict[str, Any]:
    with redis(logs / "redis.log") as broker:
        port = free_port()
        proc, pids = start_server(
            project, workers, server_cores[:workers], broker, logs / "server.log", "127.0.0.1", port
        )
        try:
            args = ["fanout", "--subs", str(subs), "--publishers", "4", "--window", "64"]
            args += ["--latency-fracs", "", "--slow-rate", "0", *window]
            cmd = loadgen_cmd(
                lg_cores[0], args, f"127.0.0.1:{port}", pids, ",".join(map(str, server_cores[:workers]))
            )
            done = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
            if done.returncode != 0:
                raise RuntimeError(done.stderr.decode(errors="replace").strip().splitlines()[-1:])
            sat = json.loads(done.stdout)["saturated"]
        finally:
            stop(proc, 30)
    return {
        "workers": workers,
        "subs": subs,
        "command": " ".join(cmd[3:]),
        **{
            k: sat[k]
            for k in (
                "deliveries_per_s",
                "per_server_cpu_s",
                "server_cpu_pct",
                "loadgen_cpu_pct",
                "undelivered_after_drain",
            )
        },
    }


def idle_step(
    project: Path,
    workers: int,
    level: int,
    per_loadgen: int,
    server_cores: list[int],
    lg_cores: list[int],
    logs: Path,
    hold: float,
    port: int,
) -> dict[str, Any]:
    count = math.ceil(level / per_loadgen)
    if count > 250:
        raise ValueError("more load generators than 127.0.0.x addresses")
    with redis(logs / "redis.log") as broker:
        proc, pids = start_server(
            project, workers, server_cores[:workers], broker, logs / "server.log", ANY_ADDRESS, port
        )
        try:
            base = sum(rss_kib(p) for p in pids)
            peak = [base]
            stopped = threading.Event()

            def sample() -> None:
                while not stopped.wait(0.5):
                    peak[0] = max(peak[0], sum(rss_kib(p) for p in pids))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            # Every load generator holds its connections until all have connected: the hold covers
            # the slowest one's connecting time (about level / 2,000 handshakes/s per worker).
            hold_all = hold + level / max(1, 2000 * workers) + 10
            started = time.monotonic()
            procs = []
            for k in range(count):
                n = min(per_loadgen, level - k * per_loadgen)
                args = ["idle", "--conns", str(n), "--hold", f"{hold_all:.0f}", "--concurrency", "200"]
                cmd = loadgen_cmd(
                    lg_cores[k % len(lg_cores)],
                    args,
                    f"127.0.0.{k + 1}:{port}",
                    pids,
                    ",".join(map(str, server_cores)),
                )
                procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            results, errors = [], []
            for p in procs:
                try:
                    out, err = p.communicate(timeout=max(60.0, 3 * hold_all + 600))
                except subprocess.TimeoutExpired:
                    p.kill()
                    out, err = p.communicate()
                if p.returncode == 0:
                    results.append(json.loads(out))
                else:
                    errors.append(err.decode(errors="replace").strip().splitlines()[-1:])
            stopped.set()
            sampler.join()
        finally:
            stop(proc, 30)
    conns = sum(r["conns"] for r in results)
    alive = sum(r["alive_after_hold"] for r in results)
    return {
        "workers": workers,
        "level": level,
        "loadgens": count,
        "conns": conns,
        "alive_after_hold": alive,
        "ok": not errors and alive >= 0.99 * level,
        "errors": errors,
        "wall_s": time.monotonic() - started,
        "handshakes_per_s_sum": sum(r["handshakes_per_s"] for r in results),
        "server_rss_added_kib": peak[0] - base,
        "kib_per_conn": (peak[0] - base) / max(1, alive),
        "command_first": " ".join(
            loadgen_cmd(
                lg_cores[0], ["idle", "--conns", str(min(per_loadgen, level))], f"127.0.0.1:{port}", pids, ""
            )[3:]
        ),
    }


def write(out: Path, data: dict[str, Any]) -> None:
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    lines = [
        f"# bigbox run {data['stamp']}",
        "",
        f"`{data['command']}`",
        "",
        "## Preflight",
        "",
        "```",
        json.dumps(data["preflight"], indent=1),
        "```",
        "",
    ]
    lines += [
        "## Fan-out",
        "",
        "| workers | subscribers | deliveries/s | per server CPU-s | server CPU % | loadgen CPU % |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["fanout"]:
        if "error" in r:
            lines.append(f"| {r['workers']} | {r['subs']} | error: {r['error']} | | | |")
        else:
            lines.append(
                f"| {r['workers']} | {r['subs']} | {r['deliveries_per_s']:,.0f} | {r['per_server_cpu_s']:,.0f} | {r['server_cpu_pct']:.0f} | {r['loadgen_cpu_pct']:.0f} |"
            )
    lines += [
        "",
        "## Idle connections",
        "",
        "| workers | level | open after hold | handshakes/s | server RSS added | KiB/conn | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["idle"]:
        if "error" in r:
            lines.append(f"| {r['workers']} | {r['level']:,} | error: {r['error']} | | | | no |")
        else:
            lines.append(
                f"| {r['workers']} | {r['level']:,} | {r['alive_after_hold']:,} | {r['handshakes_per_s_sum']:,.0f} | {r['server_rss_added_kib'] / 1024:,.0f} MiB | {r['kib_per_conn']:.1f} | {'yes' if r['ok'] else 'no'} |"
            )
    lines += ["", "Skipped: " + (", ".join(data["skipped"]) or "nothing"), ""]
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that every phase runs")
    p.add_argument("--preflight-only", action="store_true")
    p.add_argument("--apply-sysctls", action="store_true", help="sysctl -w what is below the needs (root)")
    p.add_argument("--levels", default="100000,250000,500000,1000000")
    p.add_argument(
        "--per-loadgen", type=int, default=50_000, help="connections per load generator (one 127.0.0.x each)"
    )
    p.add_argument("--subs", default="1000,10000", help="fan-out subscriber counts")
    p.add_argument("--hold", type=float, default=30.0, help="seconds all connections stay open")
    p.add_argument("--server-cores", type=int, help="cores for the server (default: half of them)")
    p.add_argument("--mypyc", action="store_true", help="bench the compiled build (needs a C compiler)")
    p.add_argument("--project", type=Path, help="a rendered project with the Redis adapter")
    p.add_argument("--budget-min", type=float, default=120.0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.smoke:
        args.levels, args.per_loadgen, args.subs, args.hold, args.budget_min = (
            "200,400",
            150,
            "100",
            2.0,
            min(args.budget_min, 10),
        )
    budget = Budget(args.budget_min)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or BIGBOX / f"results-{stamp}.json"
    found = preflight(args.apply_sysctls)
    data: dict[str, Any] = {
        "stamp": stamp,
        "command": " ".join(sys.argv),
        "preflight": found,
        "fanout": [],
        "idle": [],
        "skipped": [],
    }
    print(json.dumps(found, indent=1), file=sys.stderr)
    if args.preflight_only:
        return 0 if not found["problems"] else 1
    cores = sorted(os.sched_getaffinity(0))
    n_server = args.server_cores or max(1, len(cores) // 2)
    server_cores, lg_cores = cores[:n_server], cores[n_server:] or cores[-1:]
    logs = WORK / "bigbox" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    project = args.project or render_chat(
        BENCH.parent, WORK / "chat-demo-picows-scale-out", transport="picows", scale_out=True
    )
    if args.mypyc:
        project = compiled_copy(project)
    window = ["--warmup", "0.5", "--measure", "1.5"] if args.smoke else ["--warmup", "2", "--measure", "10"]
    for subs in [int(s) for s in args.subs.split(",")]:
        for workers in sorted({1, n_server}):
            if budget.left() < 120:
                data["skipped"].append(f"fan-out {subs} subs x {workers} workers (budget)")
                continue
            print(f"fan-out: {subs} subscribers, {workers} workers", file=sys.stderr, flush=True)
            try:
                data["fanout"].append(
                    fanout_step(project, workers, subs, server_cores, lg_cores, logs, window)
                )
            except Exception as exc:  # recorded, and the run goes on
                data["fanout"].append({"workers": workers, "subs": subs, "error": str(exc)})
            write(out, data)
    port = args.port or free_port()
    for level in [int(x) for x in args.levels.split(",")]:
        if level > found["max_conns_by_memory"] or budget.left() < 60 + level / 1000:
            data["skipped"].append(f"idle {level:,} (memory or budget)")
            continue
        print(f"idle: {level:,} connections, {n_server} workers", file=sys.stderr, flush=True)
        try:
            step = idle_step(
                project, n_server, level, args.per_loadgen, server_cores, lg_cores, logs, args.hold, port
            )
        except Exception as exc:
            step = {"workers": n_server, "level": level, "ok": False, "error": str(exc)}
        data["idle"].append(step)
        write(out, data)
        if not step["ok"]:
            data["skipped"].append(f"levels above {level:,} (this one failed)")
            break
    write(out, data)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
