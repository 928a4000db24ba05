"""Every core of the box on one port: ``python -m <package> --workers N|auto`` (``WS_WORKERS``).

One server process runs on one core (asyncio is single-threaded). With ``workers`` > 1 the
process you start becomes a **supervisor** that serves nothing itself and runs N **workers**, each a
whole server on the same host and port:

* **One port, kernel-balanced.** Every worker listens with ``SO_REUSEPORT``; Linux hashes each new
  connection onto one of the listening sockets, so no process hands connections around. The
  supervisor first binds (and never listens on) a ``SO_REUSEPORT`` socket of its own on
  ``WS_HOST:WS_PORT``: port 0 is resolved there once, for every worker, and the port stays
  reserved while a worker restarts. The server API (``WS_API_PORT``) is shared the same way, so any
  worker answers a call; what must reach every worker (disconnect or subscribe a user) already
  travels over the broker as control messages.
* **Shared state only through the broker.** Workers are separate processes, like instances on
  separate boxes: channels, history and presence live in the broker, and clients resume by
  ``seq`` on whichever worker they land. The in-memory broker lives inside one process, so more
  than one worker on ``memory://`` is refused (exit 2) with the settings to use instead.
  Per-connection limits (``WS_MAX_CONNECTIONS_PER_IP``, ``WS_MAX_CONNECTIONS_TOTAL``,
  handshake caps) are counted by each worker for its own connections: the server-wide bound is
  N times the setting.
* **Workers are fresh interpreters** started with the command that started the supervisor
  (``python -m <package>``, or your own entry point calling ``__main__.main``) plus
  ``--port P --workers N``, and ``WS_WORKER_ROLE`` in their environment. Not ``fork``: no event
  loop, broker connection or thread is inherited half-alive. Not ``multiprocessing``: a worker is
  exactly the program you run with one worker, with the same signals and exit statuses.
* **Supervision.** A worker that exits unexpectedly (crash, ``kill -9``, out of memory) is
  restarted after a backoff that starts at 0.5 s and doubles up to 30 s, back to 0.5 s once a
  worker has run a minute; each exit is logged with its status, uptime and delay
  (``worker_restart``). Its clients reconnect to the other workers and resume from their last
  ``seq``; connections still in its accept queue when it died are reset. A worker that exits with
  status 2 before it listens (unusable configuration, a port it cannot bind) stops the server with
  status 2: a restart would fail the same way.
* **Shutdown.** SIGTERM or SIGINT to the supervisor is forwarded as SIGTERM to every worker, which
  drains as one process does (``/readyz`` 503 for ``WS_SHUTDOWN_DRAIN_S``, then 1001 to every client
  within ``WS_SHUTDOWN_GRACE_S``); the supervisor waits drain + grace + :data:`STOP_MARGIN_S`,
  kills what is left with SIGKILL and exits 0. Workers ask the kernel for SIGTERM when the
  supervisor dies (``PR_SET_PDEATHSIG``), so none survives it holding the port.
* **Metrics.** ``/metrics`` on any worker reports the whole server (``worker_metrics.py``); the
  supervisor gives the workers a fresh temporary directory for it and removes it at exit.

**Platforms.** More than one worker needs Linux (3.9 or later). macOS and the BSDs have
``SO_REUSEPORT`` but do not balance it (one socket takes every connection), and Windows has no
such option; handing one inherited listening socket to every worker would work there but wakes
every worker for each connection. Elsewhere ``--workers`` > 1 exits 2 with a message: run one
process per core on separate ports behind a load balancer instead. Like any ``SO_REUSEPORT``
group, another process of the same user that listens on the port with the option joins it.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from .settings import Settings, SettingsError

logger = logging.getLogger(__name__)

ROLE_ENV: Final = "WS_WORKER_ROLE"
"""Set by the supervisor in each worker's environment (JSON :class:`WorkerRole`); never by hand."""
BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
HEALTHY_AFTER_S: Final = 60.0
"""A worker that ran this long before exiting is restarted after :data:`BACKOFF_FIRST_S` again."""
STOP_MARGIN_S: Final = 5.0
"""Beyond drain + grace, how long the supervisor waits for workers before SIGKILL."""
POLL_S: Final = 0.1
CONFIG_ERROR: Final = 2
"""The exit status of unusable configuration (``__main__``), from a worker as from the server."""


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """What a worker process learns from its supervisor (``WS_WORKER_ROLE``)."""

    index: int
    supervisor_pid: int
    ready_fd: int
    """Write end of a pipe: one byte once the worker listens, so the supervisor knows it started."""
    metrics_dir: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerRole | None:
        raw = (os.environ if environ is None else environ).get(ROLE_ENV)
        if not raw:
            return None
        return cls(**json.loads(raw))

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    def die_with_supervisor(self) -> bool:
        """Ask for SIGTERM when the supervisor exits (Linux ``PR_SET_PDEATHSIG``), so the worker
        drains and frees the port; False when the supervisor is already gone."""
        if sys.platform == "linux":
            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
                logger.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        return os.getppid() == self.supervisor_pid

    def listening(self) -> None:
        """Tell the supervisor this worker started (its port is open)."""
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)


def refusal(settings: Settings) -> str | None:
    """Why ``settings.workers`` > 1 cannot run here (platform, in-memory broker); None when it can."""
    if sys.platform != "linux" or not hasattr(socket, "SO_REUSEPORT"):
        return (
            f"--workers {settings.workers} (WS_WORKERS) needs Linux: {sys.platform} has no SO_REUSEPORT "
            "that balances connections across processes. Run one worker per process on separate "
            "ports (WS_PORT) behind a load balancer, or WS_WORKERS=1"
        )
    if settings.broker_url.partition("://")[0].lower() == "memory":
        from .broker import SCHEMES

        remote = [f"{scheme}://" for scheme in SCHEMES if scheme != "memory"]
        if remote:
            how = f"set WS_BROKER_URL (--broker-url) to a {' or '.join(remote)} URL this project ships an adapter for"
        else:
            how = (
                "this project ships only the in-memory broker: set the `preferred_broker` memory convention "
                "(redis or nats) and run `wsforge regenerate` to render that adapter, then set WS_BROKER_URL"
            )
        return (
            f"--workers {settings.workers} (WS_WORKERS) needs a broker the workers share, but WS_BROKER_URL "
            f"is memory://, which lives inside one process (each worker would have channels of its own): "
            f"{how}; or run one worker (WS_WORKERS=1)"
        )
    return None


def worker_command(from_command_line: bool) -> list[str]:
    """How to start a worker: the interpreter and program that started this process, without its
    arguments (``[python, -m, <package>]`` for ``python -m <package>``, ``[python, app.py]`` for
    your own entry point) when ``main`` read them from the command line; else (``main(argv)``
    called from other code, a test runner say) ``[python, -m, <package>]``."""
    program = sys.orig_argv[1 : len(sys.orig_argv) - len(sys.argv) + 1] if from_command_line else []
    return [sys.executable, *program] if program else [sys.executable, "-m", __package__ or ""]


def reserve_port(host: str, port: int, what: str, variables: str) -> socket.socket:
    """A bound, never listening ``SO_REUSEPORT`` socket on ``host:port`` (port 0: a free one).

    Raises:
        SettingsError: the address cannot be bound (in use by a process outside the group, not local).
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise SettingsError(f"cannot listen on {host}:{port}{what}: {exc} ({variables} choose another)") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise SettingsError(f"cannot listen on {host}:{port}{what}: {why} ({variables} choose another)") from None
    return sock


@dataclass(slots=True)
class _Slot:
    """Worker position ``index``: its current process, or when it is due to start again."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_fd: int | None = None
    listening: bool = False
    restart_at: float | None = None
    backoff_s: float = BACKOFF_FIRST_S


class Supervisor:
    """Runs ``settings.workers`` workers on one port until SIGTERM/SIGINT; see the module docstring."""

    def __init__(self, settings: Settings, argv: Sequence[str], command: Sequence[str]) -> None:
        self.settings = settings
        self.argv = list(argv)
        self.command = list(command)
        self.slots = [_Slot(i) for i in range(settings.workers)]
        self.reserved: list[socket.socket] = []
        self.port = settings.port
        self.api_port: int | None = None
        self.metrics_dir = Path()
        self.stop_signal: int | None = None
        self.all_listening_logged = False

    def run(self) -> int:
        """Serve until a termination signal (0) or a worker's configuration error (2).

        Raises:
            SettingsError: the port (or the API port) cannot be bound.
        """
        s = self.settings
        self.reserved.append(reserve_port(s.host, s.port, "", "WS_HOST / WS_PORT"))
        self.port = int(self.reserved[0].getsockname()[1])
        if getattr(s, "api_keys", ()):  # the server API is rendered and on: every worker listens on its port too
            api_host, api_port = getattr(s, "api_host"), getattr(s, "api_port")  # noqa: B009 - not in every render
            api = reserve_port(api_host, api_port, " for the server API", "WS_API_HOST / WS_API_PORT")
            self.reserved.append(api)
            self.api_port = int(api.getsockname()[1])
        self.metrics_dir = Path(tempfile.mkdtemp(prefix=f"{__package__}-metrics-"))
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            logger.info(
                "starting %d workers on %s:%d",
                s.workers,
                s.host,
                self.port,
                extra={"event": "workers_starting", "workers": s.workers, "host": s.host, "port": self.port},
            )
            status = self._supervise()
            self._stop_all()
            return status
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in self.reserved:
                sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signal = signum

    def _supervise(self) -> int:
        for slot in self.slots:
            self._spawn(slot)
        while self.stop_signal is None:
            self._wait_for_news()
            now = time.monotonic()
            for slot in self.slots:
                exited = slot.proc is not None and slot.proc.poll() is not None
                if exited and self._exited(slot, now) == CONFIG_ERROR:
                    return CONFIG_ERROR
                if slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._spawn(slot)
            if not self.all_listening_logged and all(slot.listening for slot in self.slots):
                self.all_listening_logged = True
                logger.info(
                    "%d workers listening on %s:%d",
                    len(self.slots),
                    self.settings.host,
                    self.port,
                    extra={"event": "workers_listening", "workers": len(self.slots), "port": self.port},
                )
        logger.info(
            "%s: stopping %d workers",
            signal.Signals(self.stop_signal).name,
            len(self.slots),
            extra={"event": "workers_stopping"},
        )
        return 0

    def _wait_for_news(self) -> None:
        """Sleep up to :data:`POLL_S`, waking when a worker reports it listens (or its pipe closes)."""
        fds = {slot.ready_fd: slot for slot in self.slots if slot.ready_fd is not None}
        if not fds:
            time.sleep(POLL_S)
            return
        readable, _, _ = select.select(list(fds), [], [], POLL_S)
        for fd in readable:
            slot = fds[fd]
            if os.read(fd, 1):
                slot.listening = True
                logger.info(
                    "worker %d (pid %d) listening",
                    slot.index,
                    slot.proc.pid if slot.proc else 0,
                    extra={"event": "worker_listening", "worker": slot.index},
                )
            os.close(fd)
            slot.ready_fd = None

    def _spawn(self, slot: _Slot) -> None:
        read_fd, write_fd = os.pipe()
        role = WorkerRole(slot.index, os.getpid(), write_fd, str(self.metrics_dir))
        env = {**os.environ, ROLE_ENV: role.to_env()}
        if self.api_port is not None:
            env["WS_API_PORT"] = str(self.api_port)
        args = [*self.command, *self.argv, "--port", str(self.port), "--workers", str(self.settings.workers)]
        try:
            slot.proc = subprocess.Popen(args, env=env, pass_fds=(write_fd,))  # noqa: S603 - our own command line
        finally:
            os.close(write_fd)
        slot.ready_fd, slot.listening, slot.restart_at = read_fd, False, None
        slot.started_at = time.monotonic()
        logger.info(
            "worker %d started (pid %d)",
            slot.index,
            slot.proc.pid,
            extra={"event": "worker_started", "worker": slot.index, "pid": slot.proc.pid},
        )

    def _exited(self, slot: _Slot, now: float) -> int | None:
        """Account for a worker that exited on its own: schedule its restart, or return
        :data:`CONFIG_ERROR` when it could not start for a reason a restart would not fix."""
        assert slot.proc is not None
        proc, slot.proc = slot.proc, None
        if slot.ready_fd is not None:
            os.close(slot.ready_fd)
            slot.ready_fd = None
        self._retire_metrics(proc.pid)
        status, uptime = proc.returncode, now - slot.started_at
        how = f"signal {signal.Signals(-status).name}" if status < 0 else f"status {status}"
        fields = {"worker": slot.index, "pid": proc.pid, "status": status, "uptime_s": round(uptime, 3)}
        if status == CONFIG_ERROR and not slot.listening:
            logger.error(
                "worker %d exited with status 2 before listening (unusable configuration, see its "
                "message above): stopping the server",
                slot.index,
                extra={"event": "worker_config_error", **fields},
            )
            return CONFIG_ERROR
        if uptime >= HEALTHY_AFTER_S:
            slot.backoff_s = BACKOFF_FIRST_S
        delay, slot.backoff_s = slot.backoff_s, min(slot.backoff_s * 2, BACKOFF_MAX_S)
        slot.restart_at = now + delay
        logger.warning(
            "worker %d (pid %d) exited with %s after %.1f s; restarting in %.1f s",
            slot.index,
            proc.pid,
            how,
            uptime,
            delay,
            extra={"event": "worker_restart", "delay_s": delay, **fields},
        )
        return None

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait drain + grace + margin, SIGKILL what is left."""
        running = [slot.proc for slot in self.slots if slot.proc is not None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        s = self.settings
        deadline = time.monotonic() + s.shutdown_drain_s + s.shutdown_grace_s + STOP_MARGIN_S
        while any(proc.poll() is None for proc in running) and time.monotonic() < deadline:
            time.sleep(POLL_S / 2)
        for proc in running:
            if proc.poll() is None:
                logger.warning(
                    "worker pid %d still running after the grace period: killing it",
                    proc.pid,
                    extra={"event": "worker_killed", "pid": proc.pid},
                )
                proc.kill()
                proc.wait()
            self._retire_metrics(proc.pid)
        for slot in self.slots:
            if slot.ready_fd is not None:
                os.close(slot.ready_fd)
                slot.ready_fd = None
            slot.proc = None
        logger.info("workers stopped", extra={"event": "workers_stopped"})

    def _retire_metrics(self, pid: int) -> None:
        from .worker_metrics import retire

        with contextlib.suppress(OSError):
            retire(self.metrics_dir, pid)


def supervise(settings: Settings, argv: Sequence[str] | None) -> int:
    """Run ``settings.workers`` workers (see the module docstring); the supervisor's exit status.
    ``argv``: the arguments ``main`` got (None: the command line's), passed on to every worker.

    Raises:
        SettingsError: workers cannot run here (:func:`refusal`) or the port cannot be bound.
    """
    why = refusal(settings)
    if why is not None:
        raise SettingsError(why)
    command = worker_command(from_command_line=argv is None)
    return Supervisor(settings, sys.argv[1:] if argv is None else argv, command).run()
