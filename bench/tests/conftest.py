"""Fixtures for the bench's own checks: real peers on loopback, started and stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "loadgen"))

from procs import free_port, stop  # noqa: E402
from run import JWT_SECRET, wait_listening  # noqa: E402
from subjects import NODE_DIR, PEERS, Subject, generated, render_chat  # noqa: E402
from workloads import QUIET_HEARTBEAT_S  # noqa: E402

UNIT = float(os.environ.get("BENCH_UNIT", "1"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every bench self-test is ``slow``: ``pytest -m "not slow"`` is the tool's inner loop."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.slow)


def node_ready() -> bool:
    return (NODE_DIR / "node_modules" / "ws").exists()


@pytest.fixture(scope="session")
def chat_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chat example rendered by this checkout, as its spec picks it (websockets)."""
    return render_chat(BENCH.parent, tmp_path_factory.mktemp("render") / "chat-demo")


@pytest.fixture(scope="session")
def chat_project_picows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chat example rendered with ``transport: picows`` in its memory's conventions."""
    return render_chat(
        BENCH.parent, tmp_path_factory.mktemp("render") / "chat-demo-picows", transport="picows"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "heartbeat(seconds): the peer fixture's server ping interval (default: the bench's)"
    )


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, int]]:
    """Start the subject named by the test's parameter; yields (name, port, pid).

    The server pings as the bench configures it unless the test has a ``heartbeat`` marker: the
    fan-out workload's counting connections cannot answer pings, and the bench never sends them any.
    """
    name = request.param
    marker = request.node.get_closest_marker("heartbeat")
    heartbeat = float(marker.args[0]) if marker else QUIET_HEARTBEAT_S
    if name == "ws-node" and not node_ready():
        if os.environ.get("CI") == "true":
            pytest.fail("Node ws peer not installed: run `python bench/run.py --setup` first")
        pytest.skip("Node ws peer not installed (python bench/run.py --setup)")
    subject: Subject
    if name.startswith("wsforge"):
        transport = "picows" if name == "wsforge-picows" else "websockets"
        project = request.getfixturevalue("chat_project_picows" if transport == "picows" else "chat_project")
        subject = generated(project, transport)
    else:
        subject = PEERS[name]
    port = free_port()
    argv, env = subject.command(port, jwt_secret=JWT_SECRET, heartbeat=heartbeat)
    proc = subprocess.Popen(argv, cwd=subject.cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        wait_listening(port, proc, 15 * UNIT)
        yield name, port, proc.pid
    finally:
        stop(proc, 5 * UNIT)
