"""Real brokers for the tests: throwaway ``redis-server`` / ``nats-server`` processes on free ports.

When the binary is installed, each session starts its own server (no persistence, temp dirs),
so tests may stop and restart it. Otherwise the tests use ``WS_TEST_REDIS_URL`` /
``WS_TEST_NATS_URL`` or a server already listening on the default loopback port. When none is
available the test is skipped on a developer machine, but fails under ``CI=true`` (or for a
backend named in ``WS_TESTS_REQUIRE=redis,nats``): every project ships both adapters and can be
pointed at either with ``WS_BROKER_URL``, and a CI run that silently skips its broker tests proves
nothing.

Every wait is a multiple of :func:`unit`, scaled by ``WS_TESTS_TIMEOUT_FACTOR`` on slow machines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

TIMEOUT_FACTOR = float(os.environ.get("WS_TESTS_TIMEOUT_FACTOR", "1"))
IN_CI = os.environ.get("CI") == "true"


def unit(n: float = 1.0) -> float:
    """``n`` seconds, scaled for slow machines."""
    return n * TIMEOUT_FACTOR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=unit(0.5)):
            return True
    except OSError:
        return False


def unavailable(backend: str, request: pytest.FixtureRequest, why: str) -> NoReturn:
    """Skip for a missing tool on a developer machine; fail under CI, where it must be installed."""
    required = {b for b in os.environ.get("WS_TESTS_REQUIRE", "").split(",") if b}
    if IN_CI or backend in required:
        pytest.fail(f"{backend} is unavailable but required (CI=true or WS_TESTS_REQUIRE): {why}")
    pytest.skip(f"{backend} unavailable (a failure under CI=true): {why}")


class RedisServer:
    """A ``redis-server`` on a fixed free port; restartable on the same port.

    Without persistence by default (a restart loses everything, like a cache); ``persistent=True``
    keeps an AOF in ``workdir`` (a stop flushes it), as a production Redis holding durable history should.
    """

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--appendfsync",
                "everysec",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + unit(10)
        while not reachable("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=unit(10))
        self.proc = None


class NatsServer:
    """A ``nats-server -js`` with its store in a temp dir, on a fixed free port; restartable."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.workdir / "nats.log"
        self.proc = subprocess.Popen(
            [
                "nats-server",
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(self.workdir / "js"),
                "-l",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + unit(10)
        while not (log.exists() and re.search("Server is ready", log.read_text(errors="replace"))):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=unit(10))
        self.proc = None


def _own_server(
    kind: type[RedisServer] | type[NatsServer], binary: str, tmp: Path
) -> RedisServer | NatsServer | None:
    if shutil.which(binary) is None:
        return None
    server = kind(tmp)
    server.start()
    return server


@pytest.fixture(scope="session")
def _redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer | None]:
    server = _own_server(RedisServer, "redis-server", tmp_path_factory.mktemp("redis"))
    yield server  # type: ignore[misc]
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def _nats_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer | None]:
    server = _own_server(NatsServer, "nats-server", tmp_path_factory.mktemp("nats"))
    yield server  # type: ignore[misc]
    if server is not None:
        server.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, _redis_session: RedisServer | None) -> str:
    """A Redis for this test (shared by the session; tests isolate themselves by key prefix)."""
    if _redis_session is not None:
        return _redis_session.url
    url = os.environ.get("WS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    host_port = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = host_port.partition(":")
    if reachable(host, int(port or 6379)):
        return url
    unavailable("redis", request, f"no redis-server binary and nothing listening at {url}")


@pytest.fixture
def nats_url(request: pytest.FixtureRequest, _nats_session: NatsServer | None) -> str:
    if _nats_session is not None:
        return _nats_session.url
    url = os.environ.get("WS_TEST_NATS_URL", "nats://127.0.0.1:4222")
    host, _, port = url.split("://", 1)[1].partition(":")
    if reachable(host, int(port or 4222)):
        return url
    unavailable("nats", request, f"no nats-server binary and nothing listening at {url}")


@pytest.fixture
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test may stop and start again."""
    if shutil.which("redis-server") is None:
        unavailable("redis", request, "the redis-server binary is needed to stop and restart Redis")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def persistent_redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """Like ``redis_server``, but what was written survives a restart (AOF)."""
    if shutil.which("redis-server") is None:
        unavailable("redis", request, "the redis-server binary is needed to stop and restart Redis")
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NatsServer]:
    if shutil.which("nats-server") is None:
        unavailable("nats", request, "the nats-server binary is needed to stop and restart NATS")
    server = NatsServer(tmp_path)
    server.start()
    yield server
    server.stop()
