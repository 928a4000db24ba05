"""``/metrics`` of the whole server when several workers share its port (``workers.py``).

Each worker keeps its counters as plain integers (:class:`~.observability.Metrics`: the hot path
pays one addition, as with one process) and writes a snapshot of them to the supervisor's metrics
directory every :data:`SYNC_INTERVAL_S` and when it stops. A scrape, whichever worker the kernel
hands it to, writes that worker's snapshot afresh and adds every snapshot up as structured values
(never as text) before rendering, so ``/metrics`` reports the server, not one process:

* counters and the latency histogram's buckets sum over every worker that ever ran: when a worker
  exits, the supervisor folds its last snapshot into ``retired.json`` (:func:`retire`), so a
  restart never makes a counter go backwards;
* gauges (``ws_connections``, ``ws_queue_depth``) sum over the live workers only;
* ``ws_workers`` is the number of live workers.

Another worker's values are up to :data:`SYNC_INTERVAL_S` old; a worker killed with SIGKILL loses
the counts of its last interval (one that stops, even on a fatal error, writes its final values).
Files: ``live-<pid>.json`` per running worker (written whole, then renamed into place) and
``retired.json``; a scrape and :func:`retire` take the directory's lock (``flock``) so a worker
being retired is never counted twice or not at all. Same role as prometheus_client's
multiprocess mode, without the dependency, and with the same text as a single process renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from .observability import Metrics

logger = logging.getLogger(__name__)

SYNC_INTERVAL_S: Final = 1.0
"""How often a worker writes its values for the others' scrapes."""
RETIRED: Final = "retired.json"


class WorkerMetrics:
    """One worker's side: publish this process's :class:`Metrics`, add up every worker's."""

    def __init__(self, directory: Path, metrics: Metrics) -> None:
        self.directory = directory
        self.metrics = metrics
        self.path = directory / f"live-{os.getpid()}.json"
        self._task: asyncio.Task[None] | None = None

    def attach(self) -> None:
        """Make ``/metrics`` report the whole server and start publishing every interval."""
        self.metrics.whole_server = self.whole_server
        self.publish()
        self._task = asyncio.get_running_loop().create_task(self._publish_every_interval())

    def close(self) -> None:
        """Stop the periodic writes; write the final values (the supervisor retires them)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.publish()

    def publish(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.metrics.snapshot(), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self.path)

    def whole_server(self, own: Metrics) -> tuple[Metrics, int]:
        """:attr:`Metrics.whole_server`: the sum over every worker and the number of live ones."""
        self.publish()
        total = Metrics()
        workers = 0
        with _locked(self.directory):
            for path in self.directory.glob("live-*.json"):
                snapshot = _read(path)
                if snapshot is not None:
                    total.add(snapshot, live=True)
                    workers += 1
            retired = _read(self.directory / RETIRED)
            if retired is not None:
                total.add(retired, live=False)
        return total, workers

    async def _publish_every_interval(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                self.publish()
            except OSError as exc:  # a full or removed directory: keep serving, say why once a while
                logger.warning("cannot write worker metrics: %s", exc, extra={"event": "metrics_write_failed"})


def retire(directory: Path, pid: int) -> None:
    """The supervisor, once worker ``pid`` has exited: fold its last values into ``retired.json``
    (its counters keep counting in the total) and drop its live file (its gauges no longer do)."""
    live = directory / f"live-{pid}.json"
    with _locked(directory):
        snapshot = _read(live)
        if snapshot is None:
            return
        total = Metrics()
        retired = _read(directory / RETIRED)
        if retired is not None:
            total.add(retired, live=False)
        total.add(snapshot, live=False)
        tmp = directory / f".{RETIRED}.tmp"
        tmp.write_text(json.dumps(total.snapshot(), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, directory / RETIRED)
        live.unlink()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # gone (retired meanwhile) or not there yet
        return None
    return data


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
