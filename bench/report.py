"""Turn ``results.json`` into RESULTS.md (tables of medians, ratios, method) and PNG plots.

Pure functions over the results dict plus one writer; rerun it on old results with
``python bench/run.py --report-only bench/.work/results/<stamp>/results.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
Result = dict[str, Any]
Getter = Callable[[dict[str, Result]], float | None]
"""Reads one number from the results of one repeat (pass label -> load-generator JSON)."""

PY_PACKAGES = ["websockets", "picows", "python-socketio", "python-engineio", "aiohttp", "orjson", "PyJWT",
               "redis", "uvloop", "matplotlib"]  # fmt: skip


# environment ----------------------------------------------------------------------------------
def _cmd(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except OSError:
        return "n/a"


def environment() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    mem = next((ln.split()[1] for ln in meminfo if ln.startswith("MemTotal")), "0")
    versions = {}
    for name in PY_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    for name in ("ws", "redis"):
        manifest = BENCH / ".work" / "node" / "node_modules" / name / "package.json"
        versions[f"npm:{name}"] = (
            json.loads(manifest.read_text())["version"] if manifest.exists() else "missing"
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": _cmd("node", "--version"),
        "redis_server": _cmd("redis-server", "--version").split(" v=")[-1].split(" ")[0],
        "git_commit": _cmd("git", "-C", str(BENCH), "rev-parse", "--short", "HEAD"),
        "load_average_at_start": os.getloadavg(),
        "versions": versions,
    }


# metrics --------------------------------------------------------------------------------------
def _latency_row(load: object, key: str, phase: str = "main") -> Getter:
    def get(r: dict[str, Result]) -> float | None:
        for row in r.get(phase, {}).get("latency", []):
            if row["load"] == load:
                return float(row["all"][key])
        return None

    return get


def _path(pass_label: str, *keys: str | int) -> Getter:
    def get(r: dict[str, Result]) -> float | None:
        node: Any = r.get(pass_label)
        for k in keys:
            if node is None:
                return None
            node = node[k] if isinstance(k, int) else node.get(k)
        return None if node is None else float(node)

    return get


def _paced(frac: float, key: str) -> Getter:
    def get(r: dict[str, Result]) -> float | None:
        for row in r.get("main", {}).get("paced", []):
            if row["fraction"] == frac:
                return float(row["latency"][key])
        return None

    return get


def _undelivered(r: dict[str, Result]) -> float | None:
    total = 0.0
    for res in r.values():
        total += res.get("saturated", {}).get("undelivered_after_drain", 0)
        total += sum(row["undelivered_after_drain"] for row in res.get("latency", []))
    return total


def _hop(r: dict[str, Result]) -> float | None:
    two, one = _latency_row("fixed", "p50_ms", "two-fixed")(r), _latency_row("fixed", "p50_ms", "single")(r)
    return None if two is None or one is None else two - one


# (label, getter, format, higher is better, in the ratio table)
Metric = tuple[str, Getter, str, bool | None, bool]
FANOUT: list[Metric] = [
    ("deliveries/s (saturated)", _path("main", "saturated", "deliveries_per_s"), ",.0f", True, True),
    ("deliveries per server-CPU-second", _path("main", "saturated", "per_server_cpu_s"), ",.0f", True, True),
    ("server process CPU %", _path("main", "saturated", "server_cpu_pct"), ".0f", None, False),
    ("of which user space, %", _path("main", "saturated", "server_user_pct"), ".0f", None, False),
    (
        "server core busy % (incl. softirq)",
        _path("main", "saturated", "core_busy_pct", 0),
        ".0f",
        None,
        False,
    ),
    ("load generator CPU %", _path("main", "saturated", "loadgen_cpu_pct"), ".0f", None, False),
    ("p50 ms at 50 % of max", _latency_row(0.5, "p50_ms"), ".2f", False, True),
    ("p99 ms at 50 % of max", _latency_row(0.5, "p99_ms"), ".2f", False, False),
    ("p50 ms, one slow publisher (20/s)", _latency_row("slow", "p50_ms"), ".2f", False, True),
    ("p99 ms, one slow publisher (20/s)", _latency_row("slow", "p99_ms"), ".2f", False, False),
    ("undelivered after drain (all phases)", _undelivered, ".0f", None, False),
]
REQREP: list[Metric] = [
    ("round trips/s (closed loop)", _path("main", "closed_loop", "round_trips_per_s"), ",.0f", True, True),
    (
        "round trips per server-CPU-second",
        _path("main", "closed_loop", "per_server_cpu_s"),
        ",.0f",
        True,
        True,
    ),
    ("server process CPU %", _path("main", "closed_loop", "server_cpu_pct"), ".0f", None, False),
    (
        "server CPU µs per round trip",
        _path("main", "closed_loop", "server_us_per_event"),
        ".1f",
        False,
        False,
    ),
    ("of which user space, %", _path("main", "closed_loop", "server_user_pct"), ".0f", None, False),
    ("load generator CPU %", _path("main", "closed_loop", "loadgen_cpu_pct"), ".0f", None, False),
    ("p50 ms, closed loop", _path("main", "closed_loop", "latency", "p50_ms"), ".2f", False, False),
    ("p99 ms, closed loop", _path("main", "closed_loop", "latency", "p99_ms"), ".2f", False, False),
    ("p50 ms at 10 % load", _paced(0.1, "p50_ms"), ".2f", False, False),
    ("p99 ms at 10 % load", _paced(0.1, "p99_ms"), ".2f", False, False),
    ("p50 ms at 50 % load", _paced(0.5, "p50_ms"), ".2f", False, True),
    ("p99 ms at 50 % load", _paced(0.5, "p99_ms"), ".2f", False, False),
]
IDLE: list[Metric] = [
    ("JWT-verified handshakes/s", _path("main", "handshakes_per_s"), ",.0f", True, True),
    ("handshakes per server-CPU-second", _path("main", "handshakes_per_server_cpu_s"), ",.0f", True, True),
    ("load generator CPU % while connecting", _path("main", "handshake_loadgen_cpu_pct"), ".0f", None, False),
    ("server RSS per idle connection, KiB", _path("main", "kib_per_conn"), ".1f", False, True),
    (
        "server RSS with all connected, MiB",
        lambda r: _mib(_path("main", "rss_after_hold_kib")(r)),
        ".0f",
        None,
        False,
    ),
    ("connections alive after the hold", _path("main", "alive_after_hold"), ".0f", None, False),
]
SCALEOUT: list[Metric] = [
    (
        "deliveries/s, two instances (saturated)",
        _path("two-saturated", "saturated", "deliveries_per_s"),
        ",.0f",
        True,
        True,
    ),
    (
        "deliveries per server-CPU-second (both)",
        _path("two-saturated", "saturated", "per_server_cpu_s"),
        ",.0f",
        True,
        True,
    ),
    ("load generator CPU %", _path("two-saturated", "saturated", "loadgen_cpu_pct"), ".0f", None, False),
    ("p50 ms, one instance, no broker", _latency_row("fixed", "p50_ms", "single"), ".2f", False, False),
    ("p50 ms, two instances + Redis", _latency_row("fixed", "p50_ms", "two-fixed"), ".2f", False, False),
    ("p99 ms, two instances + Redis", _latency_row("fixed", "p99_ms", "two-fixed"), ".2f", False, False),
    ("p50 ms added by the broker hop", _hop, ".2f", False, True),
    ("undelivered after drain (all phases)", _undelivered, ".0f", None, False),
]


def _mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024


def metrics_for(workload: str) -> list[Metric]:
    if workload.startswith("fanout"):
        return FANOUT
    return {"reqrep": REQREP, "reqrep-ping": REQREP, "idle": IDLE, "scaleout": SCALEOUT}[workload]


def repeats(data: dict[str, Any], workload: str, subject: str) -> dict[int, dict[str, Result]]:
    """Repeat number -> pass label -> load-generator result, for the repeats that completed every pass."""
    reps: dict[int, dict[str, Result]] = {}
    failed: set[int] = set()
    for run in data["runs"]:
        if run["workload"] == workload and run["subject"] == subject:
            if "result" in run:
                reps.setdefault(run["repeat"], {})[run["pass"]] = run["result"]
            else:
                failed.add(run["repeat"])
    return {k: r for k, r in sorted(reps.items()) if k not in failed}


def by_repeat(data: dict[str, Any], workload: str, subject: str) -> list[dict[str, Result]]:
    """One dict per repeat that completed every pass: pass label -> load-generator result."""
    return list(repeats(data, workload, subject).values())


def median(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else None


def medians(data: dict[str, Any], workload: str) -> dict[str, dict[str, float | None]]:
    """subject -> metric label -> median over repeats."""
    out: dict[str, dict[str, float | None]] = {}
    for s in data["subjects"]:
        reps = by_repeat(data, workload, s["name"])
        out[s["name"]] = {label: median([get(r) for r in reps]) for label, get, *_ in metrics_for(workload)}
    return out


# markdown -------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def reference_subject(data: dict[str, Any]) -> str:
    names = [s["name"] for s in data["subjects"]]
    return next((n for n in ("wsforge-picows", "wsforge") if n in names), names[0])


def markdown(data: dict[str, Any], plots: dict[str, str]) -> str:
    env = data["environment"]
    subjects = data["subjects"]
    ref = reference_subject(data)
    titles = {s["name"]: s["title"] for s in subjects}
    lines = ["# wsforge benchmark results", ""]
    if data["quick"]:
        lines += [
            "> **Smoke run (`--quick`): sizes shrunk, short windows, "
            f"{data['repeats']} repeat(s), on a machine shared with other jobs. These numbers only show that "
            "every workload runs against every subject; they are not results. Final numbers come from a full "
            "run (`python bench/run.py --publish`) on a quiet machine.**",
            "",
        ]
    lines += [
        "## How this was produced",
        "",
        f"- Command: `{data['command']}` (started {data['started']}, {data['repeats']} repeat(s); medians shown).",
        f"- CPU: {env['cpu']}, {env['cores']} cores, {env['mem_gib']} GiB RAM, Linux {env['kernel']}.",
        f"- Load average when the run started: {', '.join(f'{x:.2f}' for x in env['load_average_at_start'])}.",
        "- Servers pinned to core 0, the load generator to core 1 (`taskset`); Redis (scale-out) on core 0.",
        f"- Python {env['python']}, Node {env['node']}, redis-server {env['redis_server']}, "
        f"repository at {env['git_commit']}.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        "| subject | what it is |",
        "|---|---|",
    ]
    for s in subjects:
        lines.append(f"| {s['title']} | {DESCRIPTIONS.get(s['name'], '')} |")
    lines.append("")
    ratio_rows: list[str] = []
    for w in data["workloads"]:
        table = medians(data, w["name"])
        lines += [f"## {w['title']}", ""]
        lines += [f"_{note}_" for note in w["notes"]] + ([""] if w["notes"] else [])
        lines.append("| metric | " + " | ".join(titles[s["name"]] for s in subjects) + " |")
        lines.append("|---|" + "---:|" * len(subjects))
        for label, _get, spec, better, in_ratio in metrics_for(w["name"]):
            row = [_fmt(table[s["name"]][label], spec) for s in subjects]
            lines.append(f"| {label} | " + " | ".join(row) + " |")
            if in_ratio and better is not None:
                ratio_rows.append(_ratio_row(w["name"], label, table, subjects, ref, better))
        lines.append("")
        if w["name"] in plots:
            lines += [f"![{w['title']}]({plots[w['name']]})", ""]
    others = [s for s in subjects if s["name"] != ref]
    lines += [
        f"## Ratios: {titles[ref]} against each peer",
        "",
        f"Each cell is {titles[ref]}'s median divided by the peer's (for latency and memory, the peer's "
        "divided by ours), so **> 1 means better than that peer** on every row.",
        "",
        "| workload | metric | " + " | ".join(f"vs {s['title']}" for s in others) + " |",
        "|---|---|" + "---:|" * len(others),
        *ratio_rows,
        "",
        *targets(data),
        METHOD,
    ]
    return "\n".join(lines) + "\n"


def _ratio_row(
    workload: str,
    label: str,
    table: dict[str, dict[str, float | None]],
    subjects: list[dict[str, str]],
    ref: str,
    better: bool,
) -> str:
    cells = []
    ours = table[ref][label]
    for s in subjects:
        if s["name"] == ref:
            continue
        theirs = table[s["name"]][label]
        if ours is None or theirs is None or ours <= 0 or theirs <= 0:
            cells.append("—")
        else:
            cells.append(f"{(ours / theirs if better else theirs / ours):.2f}x")
    return f"| {workload} | {label} | " + " | ".join(cells) + " |"


# (workload, metric label, peer or None for an absolute bound, kind, bound, text)
TARGETS: list[tuple[str, str, str | None, str, float, str]] = [
    *[
        (w, "deliveries per server-CPU-second", peer, "ratio>=", k, f"{k:g}x {peer}")
        for w in ("fanout-1000", "fanout-100")
        for peer, k in (("picows", 2.0), ("ws-node", 3.0))
    ],
    *[
        (w, "p50 ms, one slow publisher (20/s)", "picows", "within_ms", 0.2, "within 0.2 ms of raw picows")
        for w in ("fanout-1000", "fanout-100")
    ],
    ("reqrep", "round trips per server-CPU-second", "picows", "ratio>=", 0.9, "0.9x picows"),
    (
        "reqrep-ping",
        "round trips per server-CPU-second",
        "picows-json",
        "ratio>=",
        0.9,
        "0.9x minimal picows + orjson (issue 23)",
    ),
    ("reqrep", "p50 ms at 50 % load", None, "<=", 1.2, "<= 1.2 ms"),
    ("idle", "server RSS per idle connection, KiB", None, "<=", 16_000 / 1024, "<= 16 KB"),
    ("idle", "JWT-verified handshakes/s", "picows", "ratio>=", 0.7, "0.7x picows"),
]


def targets(data: dict[str, Any]) -> list[str]:
    """Issue 7's targets for the generated server, checked against this run's medians."""
    names = [s["name"] for s in data["subjects"]]
    titles = {s["name"]: s["title"] for s in data["subjects"]}
    ours_names = [n for n in names if n.startswith("wsforge")]
    ran = {w["name"] for w in data["workloads"]}
    lines = ["## Targets of issues 7 and 23 (generated server, every feature on)", ""]
    if not ours_names:
        return [*lines, "_Not evaluated: the generated server was not part of this run._", ""]
    lines += [
        "| workload | metric | target | " + " | ".join(titles[n] for n in ours_names) + " |",
        "|---|---|---|" + "---|" * len(ours_names),
    ]
    cache = {w: medians(data, w) for w in ran}
    for workload, label, peer, kind, bound, text in TARGETS:
        if workload not in ran or (peer is not None and peer not in names):
            continue
        cells = [
            _verdict(cache[workload], ours, label, peer, kind, bound)
            + _spread(data, workload, ours, label, peer, kind)
            for ours in ours_names
        ]
        lines.append(f"| {workload} | {label} | {text} | " + " | ".join(cells) + " |")
    if int(data.get("repeats", 1)) > 1:
        lines += [
            "",
            "_Verdicts compare medians. In brackets, the same comparison within each repeat (subjects run "
            "interleaved, so a repeat's servers shared the machine's state): when those straddle the target, "
            "the verdict is within this machine's noise._",
        ]
    return [*lines, ""]


def _spread(data: dict[str, Any], workload: str, ours: str, label: str, peer: str | None, kind: str) -> str:
    """`` (a / b / c)``: the target's comparison in each repeat both subjects completed; empty for one."""
    get = next(g for name, g, *_ in metrics_for(workload) if name == label)
    mine = repeats(data, workload, ours)
    base = repeats(data, workload, peer) if peer else {}
    shown: list[str] = []
    for k, result in mine.items():
        value, other = get(result), get(base[k]) if k in base else None
        if value is None or (peer is not None and not other):
            continue
        if kind == "ratio>=":
            shown.append(f"{value / other:.2f}x")  # type: ignore[operator]
        elif kind == "within_ms":
            shown.append(f"{value - other:+.2f}")  # type: ignore[operator]
        else:
            shown.append(f"{value:.2f}")
    return f" ({' / '.join(shown)})" if len(shown) > 1 else ""


def _verdict(
    table: dict[str, dict[str, float | None]],
    ours: str,
    label: str,
    peer: str | None,
    kind: str,
    bound: float,
) -> str:
    value, base = table[ours][label], table[peer][label] if peer else None
    if value is None or (peer is not None and not base):
        return "no data"
    assert base is not None or kind == "<="
    if kind == "ratio>=":
        shown, met = f"{value / base:.2f}x", value / base >= bound  # type: ignore[operator]
    elif kind == "within_ms":
        shown, met = f"{value - base:+.2f} ms", value - base <= bound  # type: ignore[operator]
    else:
        shown, met = f"{value:.2f}", value <= bound
    return f"{shown} {'met' if met else '**not met**'}"


DESCRIPTIONS = {
    "wsforge": "the generated chat project on its default `websockets` transport: JWT + Origin at the upgrade, "
    "rate limit per frame, envelope validation, namespace authorization, per-channel seq, presence, bounded outboxes; "
    "uvloop (`WS_EVENT_LOOP=auto`)",
    "wsforge-picows": "the chat project rendered with `transport: picows` in its memory's conventions (what step 2 "
    "renders when throughput calls for it); uvloop",
    "wsforge-picows-mypyc": "the same, on the project's optional mypyc build (`scripts/compile.py` compiles the "
    "protocol core, server glue and picows adapter in place; same sources, same tests)",
    "picows": "`peers/picows_peer.py`: a set of transports per room, one `send` per member, defaults (asyncio's "
    "loop, aiofastnet's transport, 16 KiB read buffer)",
    "picows-uvloop": "the same raw picows peer on uvloop (`PEER_UVLOOP=1`); not in the default run",
    "picows-json": "`peers/picows_json_peer.py`: the lightest honest request/ack server (issue 23): parses each "
    "text frame with orjson and answers `{id, ok}`; no envelope, channels, limits or metrics; picows defaults; "
    "request/ack workloads only",
    "picows-json-uvloop": "the same minimal peer on uvloop (`PEER_UVLOOP=1`); not in the default run",
    "websockets": "`peers/websockets_peer.py`: a set per room, `websockets.broadcast`, defaults",
    "socketio": "`peers/socketio_peer.py`: `AsyncServer` on aiohttp, websocket transport only, orjson, rooms + acks",
    "ws-node": "`peers/ws_node/server.js`: `ws` with a Set per room, one Buffer sent to each member, README heartbeat",
    "socketio-node": "`peers/socketio_node/server.js`: the official `socket.io` server, websocket transport only, "
    "rooms (`io.to(room).emit`) + ack callbacks, JWT checked in a middleware",
    "wsforge-socketio": "the chat project rendered with `client_protocol: socketio` in its memory (issue 24), driven "
    "through its Socket.IO face (`/socket.io/`, Engine.IO 4 over WebSocket) on the same core: every feature of "
    "the `wsforge` row plus the Socket.IO translation; websockets transport, uvloop",
    "wsforge-picows-socketio": "the same Socket.IO face on the picows transport (`transport: picows` too); uvloop",
}

METHOD = """## Method

- **Load generator** (`bench/loadgen/`): one process on uvloop with picows clients; per-frame work is a
  callback (no task per message), deliveries are recognised by a substring and timestamps read by one
  regex. Its own CPU is in every table: at ≥ 95 % the row may be bounded by the generator, not the server.
- **Fan-out, saturated**: 4 publishers keep at most 64 messages times the subscriber count, deliveries in flight end to
  end (a publish is sent only when the receivers have caught up that far), so the rate is one the server
  sustains, not a buffer filling up. Rate and CPU are counted over the measurement window after warm-up.
  Nine subscribers in ten are bare asyncio connections (`loadgen/raw.py`) that frame only while
  subscribing, then count the delivery marker in each read with `bytes.count` (server frames are
  unmasked): a per-frame callback for every delivery made the generator, not the fastest servers, the
  limit on 2 cores. Every tenth subscriber of each instance is a picows client that sees every frame
  and samples latency. "undelivered after drain" checks every count: it is exact or the row shows it.
- **Latency** is publish-to-receive (fan-out) or send-to-ack (request/response) on one monotonic clock,
  from the actual send time; every delivery to a sampling subscriber (fan-out) and every ack is a
  sample. "50 % of max" paces one publisher at half the saturated delivery rate of the same repeat,
  sampled by the picows tenth. The slow-publisher and fixed-rate passes sample **every** subscriber:
  the bare connections keep each read with its receive time and parse the send times after the pass.
  A server whose room is a `set` (raw picows, raw websockets) sends in an order that is new each pass,
  so where one tenth of the subscribers falls in it moved the p50 by -0.64 to +0.96 ms per pass
  (raw picows, 1,000 subscribers); over all subscribers the send order no longer matters.
- **Per server-CPU-second** divides by the server processes' user + system CPU time (`/proc/<pid>/stat`)
  over the window. The kernel's loopback delivery runs in softirq, charged to no process: the "core busy"
  row shows it, and shows whether the server core was saturated.
- **Idle capacity**: connections are opened 100 at a time, each with its own HS256 JWT in
  `?access_token=`, verified by every subject at the upgrade; memory is the server's RSS growth from before
  the first connection to after the hold (heartbeats on), divided by the connection count.
- **Scale-out**: subscribers alternate between two instances, publishers use the first; the raw peers
  bridge rooms over Redis pub/sub, python-socketio uses its `AsyncRedisManager`. The broker hop is the
  two-instance p50 minus the one-instance p50 at the same publish rate, from the same repeat.
- **The generated server** is the chat example (`examples/chat.yaml`) rendered by this checkout, run
  with `python -m chat_demo`: JWT and Origin checks at the upgrade, envelope validation, namespace
  authorization, per-channel seq, presence, bounded outboxes, all on. Only the limits a load generator
  trips by design are raised through `WS_*` variables (`bench/subjects.py::generated_env`): the rate
  limiter still runs its token bucket on every frame, but with a bucket no publisher empties, and the
  per-IP cap is lifted because every connection comes from 127.0.0.1; the outbox holds 1,024 frames, not
  256, since the pump bounds lag over all subscribers, not per subscriber. Its channel is `room:bench`.
  On the picows adapter (on uvloop's socket transport; the raw picows peer gets aiofastnet's on
  asyncio's loop, which `ws_create_server` picks when installed) it answers a request inside the frame
  callback when nothing needs an await
  (the in-process broker; a remote broker's calls always run in a task). While flushes show that
  connections get several events per loop iteration, one flush per iteration writes each
  subscriber's queued events with one call; while they get about one, the iteration's first message
  is written to each subscriber at once (a lone publisher's latency). Setup (not measured) subscribes
  50 connections at a time: presence makes every join an event to every member.
- **One slow publisher** (20 messages/s): with nothing coalesced, each message becomes one frame per
  subscriber, and the latency CDF rises about linearly with the subscriber's place in the send order.
  Its p50 is set by half the subscribers' sends and reads through the kernel and the one load-generator
  process; a server's own per-recipient Python cost is a small part of it, so repeats differ about as
  much as servers do (the targets table shows each repeat).
- Each repeat starts fresh servers; subjects are interleaved within a repeat; tables show medians.
- Profiles: `python bench/profile.py --transport picows --workload fanout -- --subs 1000` (py-spy);
  summaries in `bench/profiles/`.
"""


# plots ----------------------------------------------------------------------------------------
def _nines(pct: float) -> float:
    return -math.log10(max(1e-4, 1 - pct / 100))


def _representative(reps: list[dict[str, Result]], pick: Callable[[dict[str, Result]], Any]) -> Any:
    """The latency summary of the repeat whose p50 is the median one."""
    found = [(s["p50_ms"], s) for s in (pick(r) for r in reps) if s and s.get("cdf_ms")]
    if not found:
        return None
    found.sort(key=lambda x: x[0])
    return found[len(found) // 2][1]


def _fanout_pick(load: object, phase: str = "main") -> Callable[[dict[str, Result]], Any]:
    def pick(r: dict[str, Result]) -> Any:
        return next((row["all"] for row in r.get(phase, {}).get("latency", []) if row["load"] == load), None)

    return pick


def _paced_pick(frac: float) -> Callable[[dict[str, Result]], Any]:
    def pick(r: dict[str, Result]) -> Any:
        return next((p["latency"] for p in r.get("main", {}).get("paced", []) if p["fraction"] == frac), None)

    return pick


def _panels(workload: str) -> list[tuple[str, Callable[[dict[str, Result]], Any]]]:
    if workload.startswith("fanout"):
        return [("50 % of max rate", _fanout_pick(0.5)), ("one slow publisher", _fanout_pick("slow"))]
    if workload in ("reqrep", "reqrep-ping"):
        return [
            ("closed loop", lambda r: r.get("main", {}).get("closed_loop", {}).get("latency")),
            ("10 % load", _paced_pick(0.1)),
            ("50 % load", _paced_pick(0.5)),
        ]
    if workload == "scaleout":
        return [
            ("one instance", _fanout_pick("fixed", "single")),
            ("two + Redis", _fanout_pick("fixed", "two-fixed")),
        ]
    return []


def plot(data: dict[str, Any], workload: dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = workload["name"]
    subjects = data["subjects"]
    if name == "idle":
        table = medians(data, name)
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for ax, label in zip(
            axes, ["JWT-verified handshakes/s", "server RSS per idle connection, KiB"], strict=True
        ):
            values = [table[s["name"]][label] or 0 for s in subjects]
            ax.bar([s["title"] for s in subjects], values, color="C0")
            ax.set_title(label, fontsize=10)
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    else:
        panels = _panels(name)
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
        ticks = [0, 50, 90, 99, 99.9, 99.99]
        for ax, (title, pick) in zip(axes[0], panels, strict=True):
            for i, s in enumerate(subjects):
                summary = _representative(by_repeat(data, name, s["name"]), pick)
                if summary is None:
                    continue
                xs = [_nines(p) for p, _ in summary["cdf_ms"]]
                ys = [max(v, 1e-3) for _, v in summary["cdf_ms"]]
                ax.plot(xs, ys, label=s["title"], color=f"C{i}")
            ax.set_xticks([_nines(t) for t in ticks], [f"{t:g}" for t in ticks])
            ax.set_yscale("log")
            ax.set_xlabel("percentile")
            ax.set_ylabel("latency, ms")
            ax.set_title(title, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=8)
    fig.suptitle(workload["title"] + (" — SMOKE RUN, not results" if data["quick"] else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(data: dict[str, Any], out: Path, publish_to: Path | None = None) -> Path:
    """Write ``out/RESULTS.md`` and ``out/plots/*.png``; with ``publish_to``, copy both there."""
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots = {}
    for w in data["workloads"]:
        if plot(data, w, plot_dir / f"{w['name']}.png"):
            plots[w["name"]] = f"plots/{w['name']}.png"
    text = markdown(data, plots)
    (out / "RESULTS.md").write_text(text)
    if publish_to is not None:
        (publish_to / "plots").mkdir(exist_ok=True)
        for w in data["workloads"]:
            shutil.copy(plot_dir / f"{w['name']}.png", publish_to / "plots" / f"{w['name']}.png")
        (publish_to / "RESULTS.md").write_text(text)
    return out / "RESULTS.md"
