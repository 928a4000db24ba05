"""Each peer against the real load generator on loopback, at tiny sizes (correctness, not speed)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BENCH, UNIT
from raw import open_raw
from run import JWT_SECRET
from wire import DIALECTS

PEER_NAMES = ["wsforge", "wsforge-picows", "picows", "websockets", "socketio", "ws-node"]


def loadgen(
    peer: tuple[str, int, int], *args: str, secret: str = JWT_SECRET
) -> subprocess.CompletedProcess[str]:
    name, port, pid = peer
    dialect, path = ("socketio", "/socket.io/") if name == "socketio" else ("wsforge", "/ws")
    cmd = [sys.executable, str(BENCH / "loadgen" / "main.py"), *args, "--urls", f"127.0.0.1:{port}",
           "--server-pids", str(pid), "--dialect", dialect, "--path", path, "--jwt-secret", secret]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120 * UNIT, check=False)


def result(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    data: dict[str, object] = json.loads(proc.stdout)
    return data


@pytest.mark.parametrize("peer", PEER_NAMES, indirect=True)
def test_fanout_delivers_every_message_to_every_subscriber(peer: tuple[str, int, int]) -> None:
    """Saturated and paced phases both drain to zero undelivered messages."""
    out = result(
        loadgen(peer, "fanout", "--subs", "5", "--warmup", "0.2", "--measure", "0.5", "--slow-rate", "20")
    )
    saturated = out["saturated"]
    assert isinstance(saturated, dict)
    assert saturated["undelivered_after_drain"] == 0
    assert saturated["deliveries_per_s"] > 0
    rows = out["latency"]
    assert isinstance(rows, list)
    assert [r["load"] for r in rows] == [0.5, "slow"]
    assert [r["undelivered_after_drain"] for r in rows] == [0, 0]
    assert all(r["all"]["n"] > 0 for r in rows)
    # One subscriber in ten samples at half load; every one, and every delivery, at the slow rate.
    assert [r["sampling_subscribers"] for r in rows] == [1, 5]
    assert rows[1]["all"]["n"] == rows[1]["deliveries"] > 0


@pytest.mark.parametrize("peer", PEER_NAMES, indirect=True)
def test_request_ack_answers_every_request(peer: tuple[str, int, int]) -> None:
    """Closed loop and paced phases each collect round-trip samples."""
    out = result(loadgen(peer, "reqrep", "--clients", "4", "--warmup", "0.2", "--measure", "0.5"))
    closed, paced = out["closed_loop"], out["paced"]
    assert isinstance(closed, dict) and isinstance(paced, list)
    assert closed["latency"]["n"] > 0
    assert [p["fraction"] for p in paced] == [0.1, 0.5]


@pytest.mark.parametrize("peer", ["picows-json", "wsforge-picows", "picows"], indirect=True)
def test_request_ack_on_ping_answers_every_request(peer: tuple[str, int, int]) -> None:
    """The issue 23 target's workload: the minimal peer answers any request, the others the protocol's ping."""
    out = result(
        loadgen(peer, "reqrep", "--action", "ping", "--clients", "4", "--warmup", "0.2", "--measure", "0.5")
    )
    closed = out["closed_loop"]
    assert isinstance(closed, dict)
    assert closed["latency"]["n"] > 0


@pytest.mark.parametrize("peer", ["picows-json"], indirect=True)
def test_the_minimal_peer_answers_publishes_and_refuses_bad_tokens(peer: tuple[str, int, int]) -> None:
    """It takes part in the publish request/ack workload too, behind the same JWT check as the others."""
    out = result(loadgen(peer, "reqrep", "--clients", "4", "--warmup", "0.2", "--measure", "0.5"))
    assert out["closed_loop"]["latency"]["n"] > 0  # type: ignore[index]
    proc = loadgen(peer, "idle", "--conns", "1", "--hold", "0", secret="another-secret-0123456789abcdef-0123")  # noqa: S106
    assert proc.returncode != 0
    assert "401" in proc.stderr


@pytest.mark.heartbeat(0.5)
@pytest.mark.parametrize("peer", PEER_NAMES, indirect=True)
def test_idle_connections_survive_heartbeats(peer: tuple[str, int, int]) -> None:
    """Connections stay open through several 0.5 s server pings."""
    out = result(loadgen(peer, "idle", "--conns", "40", "--hold", "1.5"))
    assert (out["conns"], out["alive_after_hold"]) == (40, 40)


@pytest.mark.parametrize(
    "peer", ["wsforge", "wsforge-picows", "picows", "websockets", "ws-node"], indirect=True
)
def test_a_bad_token_is_refused_at_the_upgrade(peer: tuple[str, int, int]) -> None:
    """Every peer verifies the JWT before the socket opens, so the handshake cost is comparable."""
    proc = loadgen(peer, "idle", "--conns", "1", "--hold", "0", secret="another-secret-0123456789abcdef-0123")  # noqa: S106
    assert proc.returncode != 0
    assert "401" in proc.stderr


def test_run_py_quick_writes_results_and_report(tmp_path: Path) -> None:
    """The one command, with one peer and one workload, leaves results.json, RESULTS.md and a plot."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--peers", "picows", "--workloads", "reqrep",
         "--no-generated", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=180 * UNIT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r for r in data["runs"] if "error" in r] == []
    assert "round trips/s (closed loop)" in (tmp_path / "RESULTS.md").read_text()
    assert (tmp_path / "plots" / "reqrep.png").exists()


@pytest.mark.parametrize("peer", ["wsforge-picows", "picows"], indirect=True)
def test_a_counting_connection_is_refused_with_the_servers_status(peer: tuple[str, int, int]) -> None:
    """The bare RFC 6455 client fails its upgrade as loudly as picows does: with the 401 line."""
    _name, port, _pid = peer

    async def connect() -> None:
        await open_raw(DIALECTS["wsforge"], "127.0.0.1", port, "/ws?access_token=not-a-jwt", 5 * UNIT)

    with pytest.raises(ConnectionRefusedError, match="401"):
        asyncio.run(connect())


def test_api_bench_measures_the_api_and_the_client_publish() -> None:
    """`api_bench.py` at a tiny size: both paths publish, deliver and report latency."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "api_bench.py"), "--repeats", "1", "--seconds", "0.5",
         "--samples", "20", "--concurrency", "2", "--json"],
        capture_output=True, text=True, timeout=300 * UNIT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    [row] = json.loads(proc.stdout)
    for kind in ("api", "client"):
        assert row[kind]["per_s"] > 0 and row[kind]["per_server_cpu_s"] > 0
        assert 0 < row[kind]["p50_ms"] <= row[kind]["p99_ms"]
