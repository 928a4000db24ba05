"""The workloads of issue 7, as load-generator invocations with full and ``--quick`` sizes.

Each :class:`Pass` is one run of ``loadgen/main.py`` against freshly started servers; a workload is
one pass, except scale-out, which compares one instance with two instances bridged by Redis at the
same publish rate so that the broker hop's added latency is a difference of two medians.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pass:
    label: str
    args: list[str]
    instances: int = 1
    redis: bool = False


QUIET_HEARTBEAT_S = 60.0
"""Server ping interval for every workload but idle: longer than any of them runs."""


@dataclass(frozen=True)
class Workload:
    name: str
    """Stable key for ``--workloads``; ``--quick`` keeps the key and shrinks the sizes (see title)."""
    title: str
    passes: list[Pass]
    heartbeat: float = QUIET_HEARTBEAT_S
    """Server ping interval. Only the idle workload holds connections long enough to see pings; the
    others last well under a minute, so none of their counting connections (which cannot answer a
    ping) is ever asked for a pong."""
    notes: list[str] = field(default_factory=list)
    dialects: tuple[str, ...] = ("wsforge", "socketio")
    """Load-generator dialects it can speak; subjects with another one sit it out."""


def build(quick: bool) -> dict[str, Workload]:
    q = quick
    # Full windows are sized so that one run of everything (6 subjects, 3 repeats) stays under
    # 25 minutes (one repeat took 8.6 min with 3 s windows and a 5 s idle hold on a busy machine):
    # per-CPU-second rates settle within seconds of a 1 s warm-up; the median of repeats does the rest.
    win = ["--warmup", "0.5", "--measure", "1.5"] if q else ["--warmup", "1", "--measure", "2.5"]
    # Request/ack windows are twice as long: its verdict (0.9x raw picows) sits within a few per cent
    # of the measured ratios, and 2.5 s windows gave the mypyc build 0.85x to 1.10x over 6 repeats.
    rr_win = win if q else ["--warmup", "1", "--measure", "5"]
    big, small = (50, 20) if q else (1000, 100)
    clients = 10 if q else 50
    # Every subject pings every `hb` seconds and drops a connection silent for as long. At 1.5 s,
    # python-socketio (about 300 handshakes/s, so 30 s of connecting at full load) dropped one of its
    # first connections in 4 of 10 full runs' repeats; 3 s still pings each connection during the hold.
    conns, hold, hb = (300, 2.5, 1.0) if q else (10_000, 4.0, 3.0)
    fixed = "20" if q else "10"
    fan = [
        "fanout",
        "--publishers",
        "4",
        "--window",
        "64",
        "--latency-fracs",
        "0.5",
        "--slow-rate",
        "20",
        *win,
    ]
    return {
        w.name: w
        for w in [
            Workload(
                "fanout-1000",
                f"Fan-out to {big} subscribers in one channel",
                [Pass("main", [*fan, "--subs", str(big)])],
            ),
            Workload(
                "fanout-100",
                f"Fan-out to {small} subscribers in one channel",
                [Pass("main", [*fan, "--subs", str(small)])],
            ),
            Workload(
                "reqrep",
                f"Request/ack, {clients} clients in a closed loop, then paced at 10 % and 50 %",
                [Pass("main", ["reqrep", "--clients", str(clients), "--paced-fracs", "0.1,0.5", *rr_win])],
            ),
            Workload(
                "reqrep-ping",
                f"Request/ack on the protocol's ping, {clients} clients in a closed loop, then paced at 10 % and 50 %",
                [
                    Pass(
                        "main",
                        [
                            "reqrep",
                            "--action",
                            "ping",
                            "--clients",
                            str(clients),
                            "--paced-fracs",
                            "0.1,0.5",
                            *rr_win,
                        ],
                    )
                ],
                notes=[
                    "the request/ack target of issue 23: the generated server's own `ping` (parse, validate, "
                    "rate limit, route, encoded ack, metrics) against the minimal peer, which parses the JSON "
                    "and answers its id"
                ],
                dialects=("wsforge",),
            ),
            Workload(
                "idle",
                f"Idle capacity: {conns} JWT-verified connections held {hold:g} s with {hb:g} s heartbeats",
                [Pass("main", ["idle", "--conns", str(conns), "--hold", str(hold), "--concurrency", "100"])],
                heartbeat=hb,
            ),
            Workload(
                "scaleout",
                f"Scale-out: {big} subscribers over two instances + Redis, publishers on the first",
                [
                    Pass("single", ["fanout", "--subs", str(big), "--fixed-rate", fixed, *win]),
                    Pass(
                        "two-saturated",
                        [*fan[:5], "--latency-fracs", "", "--slow-rate", "0", *win, "--subs", str(big)],
                        instances=2,
                        redis=True,
                    ),
                    Pass("two-fixed", ["fanout", "--subs", str(big), "--fixed-rate", fixed, *win], 2, True),
                ],
                notes=[
                    f"latency passes publish {fixed} messages/s; the hop is two-instance p50 minus single p50"
                ],
            ),
        ]
    }
