"""Numbers the workloads report: percentiles, CPU seconds and memory of a process from /proc."""

from __future__ import annotations

import os
from collections.abc import Sequence

_TICK = os.sysconf("SC_CLK_TCK")
PCT_GRID = [float(p) for p in range(0, 100)] + [99.5, 99.9, 99.99, 100.0]
"""Percentiles kept per measurement, enough to draw a latency CDF without storing samples."""


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def latency_summary(samples_ns: list[int]) -> dict[str, object]:
    """p50/p90/p99/p99.9/max in milliseconds plus the CDF grid for plots."""
    values = sorted(samples_ns)
    ms = [v / 1e6 for v in values]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "p999_ms": percentile(ms, 99.9),
        "max_ms": ms[-1] if ms else float("nan"),
        "cdf_ms": [[p, percentile(ms, p)] for p in PCT_GRID] if ms else [],
    }


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` (threads included), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def core_ticks(core: int) -> tuple[int, int]:
    """(busy, total) jiffies of one core since boot; busy includes softirq, which is where the
    kernel's loopback delivery runs and which no process is charged for."""
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"cpu%d " % core):
                values = [int(x) for x in line.split()[1:9]]
                idle = values[3] + values[4]
                return sum(values) - idle, sum(values)
    return 0, 0


class CpuMeter:
    """CPU used between ``start`` and ``stop``: server processes, this process, and both cores.

    Process figures (utime + stime) are what the "per server-CPU-second" ratios use; core figures
    add the softirq time of the loopback network path and show whether a core was saturated.
    """

    def __init__(self, server_pids: Sequence[int], cores: Sequence[int] = ()) -> None:
        self.pids = list(server_pids)
        self.cores = list(cores)
        self.server_s = 0.0
        self.server_user_s = 0.0
        """The user-space share of ``server_s``: what the server's own code costs, kernel send/recv aside."""
        self.loadgen_s = 0.0
        self.core_busy_pct: list[float] = []

    def _sample(self) -> tuple[float, float, float, list[tuple[int, int]]]:
        times = [cpu_times(p) for p in self.pids]
        user = sum(u for u, _ in times)
        return user + sum(s for _, s in times), user, own_cpu_seconds(), [core_ticks(c) for c in self.cores]

    def start(self) -> None:
        self._s0, self._u0, self._l0, self._c0 = self._sample()

    def stop(self) -> None:
        s1, u1, l1, c1 = self._sample()
        self.server_s, self.server_user_s, self.loadgen_s = s1 - self._s0, u1 - self._u0, l1 - self._l0
        self.core_busy_pct = [
            100 * (b1 - b0) / max(1, t1 - t0) for (b0, t0), (b1, t1) in zip(self._c0, c1, strict=True)
        ]
