"""``python -m <package>``: run the server until SIGTERM or SIGINT, then shut down gracefully.

Configuration comes from ``WS_*`` environment variables (see ``settings.py``); flags override them.
Exit status: 0 after a graceful shutdown, 2 for unusable configuration (including an address that
cannot be listened on, e.g. a port already in use, and a ``WS_TRANSPORT`` this project or
environment cannot load).

``--workers N`` (``WS_WORKERS``; ``auto``: one per available core) with N > 1 makes this process a
supervisor of N server processes on the same port (``workers.py``); with 1 it is the server itself.

At start the soft ``RLIMIT_NOFILE`` is raised to the hard limit: every socket, admitted or still
in its handshake, is a file descriptor, and distributions default to a soft limit of 1024. A
warning is logged when even the hard limit is below what the connection caps allow.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .observability import configure_logging
from .server import Server
from .settings import ENV_VARS, Settings, SettingsError, available_cores
from .workers import WorkerRole, supervise

logger = logging.getLogger(__package__)

_BIND_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
"""Why a listening socket cannot be opened: a configuration problem, reported in one line."""


def parse_args(argv: Sequence[str] | None, settings: Settings) -> Settings:
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}", description=__doc__)
    parser.add_argument("--host", help=f"listen address (WS_HOST, default {settings.host})")
    parser.add_argument("--port", type=int, help=f"listen port, 0 for any (WS_PORT, default {settings.port})")
    parser.add_argument(
        "--workers",
        type=_workers_flag,
        help=f"server processes on the port, a number or auto (one per core: {available_cores()} here) "
        f"(WS_WORKERS, default {settings.workers})",
    )
    parser.add_argument("--broker-url", help=f"memory://, redis://..., nats://... (WS_BROKER_URL, default {settings.broker_url})")
    parser.add_argument("--log-format", choices=("json", "text"), help="json or text (WS_LOG_FORMAT)")
    args = parser.parse_args(argv)
    changes = {
        key: value
        for key, value in (
            ("host", args.host),
            ("port", args.port),
            ("workers", args.workers),
            ("broker_url", args.broker_url),
            ("log_format", args.log_format),
        )
        if value is not None
    }
    return dataclasses.replace(settings, **changes)


def _workers_flag(raw: str) -> int:
    if raw.strip().lower() == "auto":
        return available_cores()
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive integer or auto")
    return value


def raise_open_files_limit(settings: Settings) -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the new soft limit (None where
    the platform has no such limit). Logs a warning when it is below the connection caps' need."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = settings.max_connections_total + settings.max_handshakes_total + 64  # + listener, logs, broker
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)
    if soft < needed:
        logger.warning(
            "open files limit %d is below what the connection caps need (%d: WS_MAX_CONNECTIONS_TOTAL "
            "+ WS_MAX_HANDSHAKES_TOTAL + 64); connections past it fail with EMFILE. Raise the hard "
            "limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=) or lower the caps",
            soft,
            needed,
            extra={"event": "nofile_low", "limit": soft, "needed": needed},
        )
    return soft


def check_broker_scheme(settings: Settings) -> None:
    """Raises :class:`SettingsError` (exit 2, not a traceback) for a ``WS_BROKER_URL`` whose scheme
    this project has no adapter for; the URL itself is not repeated (it may hold a password)."""
    from .broker import SCHEMES

    scheme = settings.broker_url.partition("://")[0].lower()
    if scheme not in SCHEMES:
        shipped = ", ".join(f"{name}://" for name in SCHEMES)
        raise SettingsError(
            f"WS_BROKER_URL: unsupported scheme {scheme!r}; this project ships {shipped} (wsforge regenerate adds another)"
        )


async def run(settings: Settings, worker: WorkerRole | None = None) -> None:
    """Serve until a termination signal, then close every connection with 1001 (bounded by the grace).

    ``worker``: this process is one of several workers (``workers.py``): ``/metrics`` then reports
    them all, and the supervisor is told once the port is open.
    """
    check_broker_scheme(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = Server(settings)
    try:
        await server.start()
    except OSError as exc:
        if exc.errno not in _BIND_ERRORS:
            raise
        with contextlib.suppress(Exception):
            await server.broker.aclose()
        where, why = f"{settings.host}:{settings.port}", os.strerror(exc.errno or 0)
        raise SettingsError(f"cannot listen on {where}: {why} (WS_HOST / WS_PORT choose another)") from None
    shared_metrics = None
    if worker is not None:
        from .worker_metrics import WorkerMetrics

        shared_metrics = WorkerMetrics(Path(worker.metrics_dir), server.metrics)
        shared_metrics.attach()
        worker.listening()
    try:
        await stop.wait()
    finally:
        await server.stop()
        if shared_metrics is not None:
            shared_metrics.close()
    logger.info("stopped", extra={"event": "stopped"})


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = parse_args(argv, Settings.from_env())
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worker = WorkerRole.from_env()
    if worker is not None and not worker.die_with_supervisor():
        return 0  # the supervisor is gone already: nothing to serve for
    configure_logging(settings.log_format, settings.log_level, None if worker is None else worker.index)
    raise_open_files_limit(settings)
    if settings.auth_enabled and not settings.jwt_key:
        variable = next(name for name, (attr, _, _) in ENV_VARS.items() if attr == "jwt_key")
        print(f"error: JWT auth is on but no key is set; set {variable}", file=sys.stderr)
        return 2
    try:
        if worker is None and settings.workers > 1:
            uvloop_or_none(settings)  # a setting every worker would refuse: refused once, here
            return supervise(settings, argv)
        run_on_event_loop(settings, worker)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_on_event_loop(settings: Settings, worker: WorkerRole | None = None) -> None:
    """:func:`run` on uvloop or on asyncio's own loop, as ``WS_EVENT_LOOP`` says.

    uvloop runs the loop, the sockets and the timers in C: measured for wsforge's benchmark, 7-9 %
    more request/ack round trips per server-CPU-second with it (picows adapter, compiled build).
    ``auto`` falls back to asyncio where uvloop is not installed (Windows has no uvloop).

    Raises:
        SettingsError: ``WS_EVENT_LOOP=uvloop`` and uvloop is not installed.
    """
    uvloop = uvloop_or_none(settings)
    if uvloop is not None:
        uvloop.run(run(settings, worker))
    else:
        asyncio.run(run(settings, worker))


def uvloop_or_none(settings: Settings) -> ModuleType | None:
    """The uvloop module when ``WS_EVENT_LOOP`` asks for it (``auto``: where installed), else None.

    Raises:
        SettingsError: ``WS_EVENT_LOOP=uvloop`` and uvloop is not installed.
    """
    if settings.event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if settings.event_loop == "uvloop":
            raise SettingsError("WS_EVENT_LOOP='uvloop': uvloop is not installed") from None
        return None
    return uvloop


if __name__ == "__main__":
    sys.exit(main())
