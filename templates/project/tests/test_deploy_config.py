"""The deployment files in ``deploy/`` are valid and do what their comments say.

``nginx -t`` checks the real ``nginx.conf`` (upstream host names swapped for loopback ports so
that it resolves outside Docker, and a temp prefix so that it writes nothing elsewhere); a real
nginx then carries a WebSocket upgrade to a server on loopback. Without nginx the tests skip, and
under ``CI=true`` they fail.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from brokers import IN_CI, free_port, reachable, unit

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
NGINX_CONF = DEPLOY / "nginx.conf"


@pytest.fixture
def nginx() -> str:
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if binary is None:
        if IN_CI:
            pytest.fail("nginx is needed to check deploy/nginx.conf under CI")
        pytest.skip("nginx is not installed")
    return binary


def local_config(tmp_path: Path, upstream_port: int, listen_port: int) -> Path:
    """``nginx.conf`` with the compose host names replaced by a loopback upstream."""
    text = NGINX_CONF.read_text()
    text = re.sub(r"server app\d+:8765", f"server 127.0.0.1:{upstream_port}", text)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    path = tmp_path / "nginx.conf"
    path.write_text(text)
    return path


def ws_path() -> str:
    match = re.search(r"location = (\S+) \{", NGINX_CONF.read_text())
    assert match is not None, "nginx.conf has no exact WebSocket location"
    return match.group(1)


def test_nginx_accepts_the_config(nginx: str, tmp_path: Path) -> None:
    """``nginx -t`` passes on the shipped configuration."""
    conf = local_config(tmp_path, free_port(), free_port())
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=unit(20),
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_read_timeout_outlives_idle_websockets() -> None:
    """The WebSocket location waits at least a minute for data, above any sane ping interval."""
    timeouts = [int(t) for t in re.findall(r"proxy_read_timeout (\d+)s;", NGINX_CONF.read_text())]
    assert timeouts
    assert timeouts[0] >= 60


def test_every_upstream_is_a_compose_service() -> None:
    """nginx balances over exactly the app services that docker-compose.yml starts."""
    upstreams = set(re.findall(r"server (app\d+):8765", NGINX_CONF.read_text()))
    services = set(re.findall(r"^  (app\d+):$", (DEPLOY / "docker-compose.yml").read_text(), re.MULTILINE))
    assert upstreams
    assert services == upstreams


@pytest.fixture
def running_nginx(nginx: str, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A real nginx with the shipped config: ``(listen port, upstream port)``."""
    upstream, listen = free_port(), free_port()
    conf = local_config(tmp_path, upstream, listen)
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(int(unit(10) / 0.05)):
            if reachable("127.0.0.1", listen):
                break
            assert proc.poll() is None, "nginx exited"
            time.sleep(0.05)
        yield listen, upstream
    finally:
        proc.terminate()
        proc.wait(timeout=unit(10))


@pytest.mark.asyncio
async def test_websocket_upgrade_passes_through_nginx(running_nginx: tuple[int, int]) -> None:
    """A client reaches the upstream through nginx: upgrade, subprotocol and frames both ways."""
    listen, upstream = running_nginx
    seen: list[str | None] = []

    async def echo(ws: ServerConnection) -> None:
        seen.append(ws.subprotocol)
        async for message in ws:
            await ws.send(message)

    subprotocols: list[Any] = ["wsforge.v1.json"]
    async with (
        asyncio.timeout(unit(20)),
        serve(echo, "127.0.0.1", upstream, subprotocols=subprotocols),
        connect(f"ws://127.0.0.1:{listen}{ws_path()}", subprotocols=subprotocols) as ws,
    ):
        await ws.send('{"v":1}')
        received = await ws.recv()
        negotiated = ws.subprotocol
    assert (received, negotiated, seen) == ('{"v":1}', "wsforge.v1.json", ["wsforge.v1.json"])


def test_compose_runs_the_instance_count_step_2_planned() -> None:
    """``docker-compose.yml`` and ``nginx.conf`` carry as many instances as ``wsforge.yaml`` plans
    (one on the in-memory broker, which cannot span processes)."""
    scaling = yaml.safe_load((DEPLOY.parent / "wsforge.yaml").read_text())["scaling"]
    planned = 1 if scaling["strategy"] == "single" else scaling["instances"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    apps = [name for name in compose["services"] if re.fullmatch(r"app\d+", name)]
    upstream = re.findall(r"server app\d+:8765", NGINX_CONF.read_text())
    nginx_needs = compose["services"]["nginx"]["depends_on"]
    assert (planned, planned, planned) == (len(apps), len(upstream), len(nginx_needs))


@pytest.mark.asyncio
async def test_nginx_overwrites_a_client_written_forwarded_for(running_nginx: tuple[int, int]) -> None:
    """nginx is the edge: the upstream sees the client's address, never what the client wrote in
    X-Forwarded-For (the server trusts the header only from its proxies, right to left)."""
    listen, upstream = running_nginx
    seen: list[str | None] = []

    def record(connection: ServerConnection, request: Any) -> None:
        seen.append(request.headers.get("X-Forwarded-For"))

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    spoofed = {"X-Forwarded-For": "198.51.100.7"}
    async with (
        asyncio.timeout(unit(20)),
        serve(echo, "127.0.0.1", upstream, process_request=record),
        connect(f"ws://127.0.0.1:{listen}{ws_path()}", additional_headers=spoofed) as ws,
    ):
        await ws.send("x")
        await ws.recv()
    assert seen == ["127.0.0.1"]


def compose_apps() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return {name: service for name, service in compose["services"].items() if re.fullmatch(r"app\d+", name)}


def seconds(duration: str) -> float:
    """A compose duration such as ``15s`` or ``1m30s``, in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def test_compose_instances_run_the_planned_workers_and_drain_in_time() -> None:
    """Every instance runs ``scaling.workers`` processes, drains within ``shutdown.grace_s``, and
    compose waits longer than that before SIGKILL."""
    spec = yaml.safe_load((DEPLOY.parent / "wsforge.yaml").read_text())
    grace = spec["shutdown"]["grace_s"]
    for name, app in compose_apps().items():
        env = app["environment"]
        assert env["WS_WORKERS"] == str(spec["scaling"]["workers"]), name
        assert float(env["WS_SHUTDOWN_GRACE_S"]) == grace, name
        assert seconds(app["stop_grace_period"]) > grace, name


def test_compose_health_is_readiness() -> None:
    """The compose healthcheck asks /readyz (503 while the broker is down or the instance drains)
    with the Python the image has, not a curl it lacks."""
    for name, app in compose_apps().items():
        test = app["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], name
        assert "/readyz" in test[3] and "8765" in test[3], name
        compile(test[3], "healthcheck", "exec")  # the probe is valid Python


def test_compose_trusts_only_nginx_for_forwarded_addresses() -> None:
    """Per-IP limits read X-Forwarded-For only from nginx's fixed address (the hardening rule)."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    nginx_address = compose["services"]["nginx"]["networks"]["default"]["ipv4_address"]
    for name, app in compose_apps().items():
        assert app["environment"]["WS_TRUSTED_PROXIES"] == f"{nginx_address}/32", name
