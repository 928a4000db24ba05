"""The probe against a freshly generated server passes; the review finds no drift in it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.probe.conftest import SECRET, generated_server
from tests.probe.servers import UNIT
from wsforge.probe import ProbeOptions, run_probes
from wsforge.review import Severity, review_spec
from wsforge.review.load import load_target

pytestmark = pytest.mark.slow  # renders the chat project and probes it running


@pytest.fixture
def chat_server(chat_project: Path) -> Iterator[str]:
    """`python -m chat_demo` on a free loopback port, stopped by its pid afterwards."""
    with generated_server(chat_project, SECRET) as url:
        yield url


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


def test_generated_picows_server_passes_every_probe(market_project: Path) -> None:
    """The picows transport (market-feed) passes every probe too, the new frame-level ones included."""
    with generated_server(market_project, SECRET, "market_feed", WS_MAX_CONNECTIONS_PER_IP="10") as url:
        opts = ProbeOptions(
            url=url,
            jwt_secret=SECRET,
            origin="https://trade.example.com",
            timeout_s=3 * UNIT,
            ping_wait_s=3 * UNIT,
            oversize_bytes=256 * 1024,
            flood_count=200,
            slow_reader_frames=1500,
        )
        report = asyncio.run(run_probes(opts))
    assert report.probes is not None
    assert {p["name"]: "pass" for p in report.probes} == {p["name"]: p["verdict"] for p in report.probes}


def test_fresh_render_has_no_drift(chat_project: Path) -> None:
    """A just-rendered project matches its wsforge.yaml: no drift rule fires."""
    target = load_target(chat_project)
    report = review_spec(
        target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines, project_dir=chat_project
    )
    assert [
        f"{f.rule_id} {f.file}: {f.evidence}" for f in report.findings if f.rule_id.startswith("WSF-DRF")
    ] == []
