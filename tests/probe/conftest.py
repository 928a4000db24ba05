"""A generated chat project, rendered once per module, and a way to run its server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.probe.servers import UNIT
from wsforge.architecture import design
from wsforge.render import render_project, write_project
from wsforge.requirements import load_requirements

REPO = Path(__file__).resolve().parents[2]
SECRET = "generated-probe-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def chat_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = design(load_requirements(REPO / "examples" / "chat.yaml"))
    target = tmp_path_factory.mktemp("generated") / "chat-demo"
    write_project(render_project(spec), target, spec)
    return target


@pytest.fixture(scope="module")
def market_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The market-feed example: the picows transport."""
    spec = design(load_requirements(REPO / "examples" / "market-feed.yaml"))
    target = tmp_path_factory.mktemp("generated") / "market-feed"
    write_project(render_project(spec), target, spec)
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def generated_server(project: Path, secret: str, package: str = "chat_demo", **env: str) -> Iterator[str]:
    """Run `python -m <package>` on a free loopback port until the block exits; yields the ws:// URL."""
    port = _free_port()
    environ = {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "WS_HOST": "127.0.0.1",
        "WS_PORT": str(port),
        "WS_JWT_SECRET": secret,
        "WS_PING_INTERVAL_S": str(0.5 * UNIT),
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", package], env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 15 * UNIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=UNIT).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"generated server did not start: {output[-2000:]}")
                time.sleep(0.05)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15 * UNIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
