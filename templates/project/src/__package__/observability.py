"""Metrics in the Prometheus text format, health bodies and log formatting. No I/O of its own.

The metric names are part of the deployment contract (dashboards and alerts use them):
``ws_connections``, ``ws_messages_in_total``, ``ws_messages_out_total``, ``ws_dropped_total{reason}``,
``ws_queue_depth``, ``ws_handler_latency_seconds`` (histogram) and
``ws_connections_rejected_total{reason}``, plus ``ws_workers`` (live server processes) when
several workers share the port. Written by hand rather than with prometheus_client to keep the
runtime dependency-free; the format is small and stable. With several workers, each one's values
travel as structured snapshots (:meth:`Metrics.snapshot`, ``worker_metrics.py``) and are added up
with :meth:`Metrics.add` before rendering: the text is never summed.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_bisect_left: Final = bisect.bisect_left
"""Per slow request: a Final name is a C static in the mypyc build, a plain global a lookup."""


class Histogram:
    """Cumulative-bucket histogram, as Prometheus expects."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # Nearly every frame takes well under the first bound: one comparison settles it without
        # the bisect call (measured: half the cost of this method in the pure build).
        buckets = self.buckets
        self.counts[0 if value <= buckets[0] else _bisect_left(buckets, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """The server's counters and gauges; plain attributes so the hot path pays one addition."""

    def __init__(self) -> None:
        self.connections = 0
        self.messages_in = 0
        self.messages_out = 0
        self.queue_depth = 0
        self.dropped: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.closed: dict[int, int] = {}
        self.latency = Histogram()
        self.whole_server: Callable[[Metrics], tuple[Metrics, int]] | None = None
        """Worker mode (``worker_metrics.py``): this process's values -> the sum over every worker
        and the number of live ones, which :meth:`render` reports. None: this process is the server."""

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def close(self, code: int) -> None:
        self.closed[code] = self.closed.get(code, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Every value as JSON-ready data (what a worker shares with the others)."""
        return {
            "connections": self.connections,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "queue_depth": self.queue_depth,
            "dropped": dict(self.dropped),
            "rejected": dict(self.rejected),
            "closed": {str(code): n for code, n in self.closed.items()},
            "latency_counts": list(self.latency.counts),
            "latency_sum": self.latency.sum,
            "latency_count": self.latency.count,
        }

    def add(self, snapshot: Mapping[str, Any], *, live: bool) -> None:
        """Add another process's :meth:`snapshot`: counters and the histogram's buckets always (what
        a worker that has since exited counted still happened), the gauges (connections, queue
        depth) only when ``live``."""
        if live:
            self.connections += int(snapshot["connections"])
            self.queue_depth += int(snapshot["queue_depth"])
        self.messages_in += int(snapshot["messages_in"])
        self.messages_out += int(snapshot["messages_out"])
        for reason, n in snapshot["dropped"].items():
            self.drop(str(reason), int(n))
        for reason, n in snapshot["rejected"].items():
            self.rejected[str(reason)] = self.rejected.get(str(reason), 0) + int(n)
        for code, n in snapshot["closed"].items():
            self.closed[int(code)] = self.closed.get(int(code), 0) + int(n)
        counts = self.latency.counts
        for i, n in enumerate(snapshot["latency_counts"][: len(counts)]):
            counts[i] += int(n)
        self.latency.sum += float(snapshot["latency_sum"])
        self.latency.count += int(snapshot["latency_count"])

    def render(self) -> str:
        """The ``/metrics`` body (text exposition format 0.0.4): of the whole server, every worker
        included, when :attr:`whole_server` is set."""
        if self.whole_server is None:
            return self.render_values()
        total, workers = self.whole_server(self)
        return (
            total.render_values()
            + "# HELP ws_workers Server processes (workers) serving this port.\n"
            + "# TYPE ws_workers gauge\n"
            + f"ws_workers {workers}\n"
        )

    def render_values(self) -> str:
        """These values in the text exposition format (one process's, or a sum)."""
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        metric("ws_connections", "gauge", "Open WebSocket connections.", [("", self.connections)])
        metric("ws_messages_in_total", "counter", "Frames received.", [("", self.messages_in)])
        metric("ws_messages_out_total", "counter", "Frames sent.", [("", self.messages_out)])
        metric(
            "ws_dropped_total",
            "counter",
            "Outbound frames dropped by backpressure, by reason.",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(self.dropped.items())],
        )
        metric("ws_queue_depth", "gauge", "Frames waiting in outbound queues.", [("", self.queue_depth)])
        metric(
            "ws_connections_rejected_total",
            "counter",
            "Handshakes refused before the socket opened, by reason.",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(self.rejected.items())],
        )
        metric(
            "ws_server_closes_total",
            "counter",
            "Connections the server decided to close, by close code.",
            [(f'{{code="{c}"}}', n) for c, n in sorted(self.closed.items())],
        )
        out.append("# HELP ws_handler_latency_seconds Time to handle one incoming frame.")
        out.append("# TYPE ws_handler_latency_seconds histogram")
        cumulative = 0
        for bound, count in zip(self.latency.buckets, self.latency.counts, strict=False):
            cumulative += count
            out.append(f'ws_handler_latency_seconds_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'ws_handler_latency_seconds_bucket{{le="+Inf"}} {self.latency.count}')
        out.append(f"ws_handler_latency_seconds_sum {_number(self.latency.sum)}")
        out.append(f"ws_handler_latency_seconds_count {self.latency.count}")
        return "\n".join(out) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def readiness(*, broker_healthy: bool, shutting_down: bool, connections: int) -> tuple[int, dict[str, Any]]:
    """``/readyz``: HTTP status and JSON body. 503 while degraded or draining, so the LB stops sending."""
    if shutting_down:
        return 503, {"status": "shutting_down", "broker": broker_healthy, "connections": connections}
    if not broker_healthy:
        return 503, {"status": "degraded", "broker": False, "connections": connections}
    return 200, {"status": "ready", "broker": True, "connections": connections}


_RESERVED = frozenset(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` plus any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class _WorkerField(logging.Filter):
    """Tags every record of a worker process with ``worker`` (its index, 0..N-1)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__["worker"] = self.index  # an `extra=` field, as JsonFormatter shows them
        return True


def configure_logging(log_format: str, level: str = "INFO", worker: int | None = None) -> None:
    """Route every logger to stderr in ``json`` or ``text`` format. Tokens are never logged by the server.

    ``worker``: this process is worker number ``worker`` of several (``workers.py``); each line
    then says so (a ``worker`` field, or ``[worker N]`` in text), as their logs share one stream.
    """
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        tag = "" if worker is None else f" [worker {worker}]"
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s"))
    if worker is not None:
        handler.addFilter(_WorkerField(worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # websockets logs every refused handshake at INFO; our own refusal log line is enough.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, root.level))
