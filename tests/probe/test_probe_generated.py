"""The probe against a freshly generated server passes; the review finds no drift in it."""

from __future__ import annotations

import asyncio
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
from wsforge.probe import ProbeOptions, run_probes
from wsforge.render import render_project, write_project
from wsforge.requirements import load_requirements
from wsforge.review import Severity, review_spec
from wsforge.review.load import load_target

REPO = Path(__file__).resolve().parents[2]
SECRET = "generated-probe-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def chat_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = design(load_requirements(REPO / "examples" / "chat.yaml"))
    target = tmp_path_factory.mktemp("generated") / "chat-demo"
    write_project(render_project(spec), target, spec)
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def chat_server(chat_project: Path) -> Iterator[str]:
    """`python -m chat_demo` on a free loopback port, stopped by its pid afterwards."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(chat_project / "src"),
        "WS_HOST": "127.0.0.1",
        "WS_PORT": str(port),
        "WS_JWT_SECRET": SECRET,
        "WS_PING_INTERVAL_S": str(0.5 * UNIT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "chat_demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
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


def test_generated_server_passes_every_probe(chat_server: str) -> None:
    """Every probe passes against the generated chat server (auth, Origin, limits, heartbeat...)."""
    opts = ProbeOptions(
        url=chat_server,
        jwt_secret=SECRET,
        origin="http://localhost:8000",
        timeout_s=3 * UNIT,
        ping_wait_s=3 * UNIT,
        oversize_bytes=256 * 1024,
        flood_count=200,
        slow_reader_frames=1500,
    )
    report = asyncio.run(run_probes(opts))
    assert report.probes is not None
    assert {p["name"]: "pass" for p in report.probes} == {p["name"]: p["verdict"] for p in report.probes}
    assert report.findings == []
    assert not report.failed(Severity.NOTE)


def test_fresh_render_has_no_drift(chat_project: Path) -> None:
    """A just-rendered project matches its wsforge.yaml: no drift rule fires."""
    target = load_target(chat_project)
    report = review_spec(
        target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines, project_dir=chat_project
    )
    assert [
        f"{f.rule_id} {f.file}: {f.evidence}" for f in report.findings if f.rule_id.startswith("WSF-DRF")
    ] == []
