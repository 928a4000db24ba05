"""The servers under test: how to start each one, and which dialect the load generator speaks.

A subject is started as one process (two for scale-out), pinned with ``taskset``, on a port the
harness picked; it must listen on 127.0.0.1 only and run until SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
NODE_DIR = WORK / "node"


@dataclass(frozen=True)
class Subject:
    name: str
    title: str
    dialect: str
    path: str
    argv: list[str]
    """Command without the per-run flags (``--port``, ``--jwt-secret``, ``--redis``, ``--heartbeat``)."""
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = BENCH
    generated: bool = False
    """Configured through ``WS_*`` variables (settings.py) instead of the peers' flags."""
    workloads: frozenset[str] | None = None
    """The workloads it takes part in; None: all (the minimal peer only answers requests)."""
    transport: str = ""
    """The generated server's transport adapter (``asgi``: mounted, run by uvicorn)."""

    def command(
        self, port: int, *, jwt_secret: str, heartbeat: float, redis_url: str = ""
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and extra environment of one instance listening on ``127.0.0.1:port``."""
        if self.generated and self.transport == ASGI:
            # uvicorn's flags: it pings (ASGI has no ping frames), and the broker is an env var.
            argv = [*self.argv, "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--ws-ping-interval", str(heartbeat), "--ws-ping-timeout", str(heartbeat)]
            env = {**self.env, **generated_env(jwt_secret, heartbeat)}
            if redis_url:
                env["WS_BROKER_URL"] = redis_url
            return argv, env
        if self.generated:
            argv = [*self.argv, "--host", "127.0.0.1", "--port", str(port)]
            if redis_url:
                argv += ["--broker-url", redis_url]
            return argv, {**self.env, **generated_env(jwt_secret, heartbeat)}
        argv = [*self.argv, "--port", str(port), "--heartbeat", str(heartbeat)]
        if jwt_secret:
            argv += ["--jwt-secret", jwt_secret]
        if redis_url:
            argv += ["--redis", redis_url]
        return argv, dict(self.env)


def generated_env(jwt_secret: str, heartbeat: float) -> dict[str, str]:
    """Every feature stays on; only the limits a load generator trips by design are raised.

    The per-connection rate limit still runs its token bucket on every frame (its cost is measured),
    but with a bucket a saturating publisher never empties; all connections come from 127.0.0.1,
    so the per-IP cap is lifted to the global one. JWT verification and Origin checks are unchanged.
    The outbox stays bounded but holds 1,024 frames instead of 256: the fan-out pump bounds
    deliveries in flight over all subscribers (64 per subscriber on average), so while the one-core
    load generator reads its sockets in turn a single subscriber can lag past 256 and be closed as
    a slow consumer (4009), which would measure the load generator rather than the server.
    """
    return {
        "WS_JWT_SECRET": jwt_secret,
        "WS_PING_INTERVAL_S": str(heartbeat),
        "WS_PING_TIMEOUT_S": str(heartbeat),
        # Engine.IO's own heartbeat, on projects that serve Socket.IO (others ignore them).
        "WS_SOCKETIO_PING_INTERVAL_S": str(heartbeat),
        "WS_SOCKETIO_PING_TIMEOUT_S": str(heartbeat),
        "WS_RATE_PER_S": "10000000",
        "WS_RATE_BURST": "10000000",
        "WS_MAX_CONNECTIONS_PER_IP": "100000",
        "WS_MAX_CONNECTIONS_TOTAL": "100000",
        "WS_OUTBOUND_QUEUE_SIZE": "1024",
        "WS_LOG_LEVEL": "WARNING",
    }


def _py(script: str) -> list[str]:
    return [sys.executable, str(BENCH / "peers" / script)]


REQUEST_ONLY: frozenset[str] = frozenset({"reqrep", "reqrep-ping"})
"""Workloads of a peer that answers requests and never delivers events."""

PEERS: dict[str, Subject] = {
    "picows": Subject("picows", "raw picows", "wsforge", "/ws", _py("picows_peer.py")),
    "picows-uvloop": Subject(
        "picows-uvloop",
        "raw picows, uvloop",
        "wsforge",
        "/ws",
        _py("picows_peer.py"),
        env={"PEER_UVLOOP": "1"},
    ),
    "picows-json": Subject(
        "picows-json",
        "minimal picows + orjson",
        "wsforge",
        "/ws",
        _py("picows_json_peer.py"),
        workloads=REQUEST_ONLY,
    ),
    "picows-json-uvloop": Subject(
        "picows-json-uvloop",
        "minimal picows + orjson, uvloop",
        "wsforge",
        "/ws",
        _py("picows_json_peer.py"),
        env={"PEER_UVLOOP": "1"},
        workloads=REQUEST_ONLY,
    ),
    "websockets": Subject("websockets", "raw websockets", "wsforge", "/ws", _py("websockets_peer.py")),
    "socketio": Subject("socketio", "python-socketio", "socketio", "/socket.io/", _py("socketio_peer.py")),
    "ws-node": Subject(
        "ws-node",
        "Node ws",
        "wsforge",
        "/ws",
        [shutil.which("node") or "node", str(BENCH / "peers" / "ws_node" / "server.js")],
        env={"NODE_PATH": str(NODE_DIR / "node_modules")},
    ),
    "socketio-node": Subject(
        "socketio-node",
        "Node socket.io",
        "socketio",
        "/socket.io/",
        [shutil.which("node") or "node", str(BENCH / "peers" / "socketio_node" / "server.js")],
        env={"NODE_PATH": str(NODE_DIR / "node_modules")},
        workloads=frozenset({"fanout-1000", "fanout-100", "reqrep", "idle"}),
    ),
}


DEFAULT_PEERS = ["picows", "picows-json", "websockets", "socketio", "ws-node"]
"""What ``run.py`` benches unless ``--peers`` says otherwise: each at its defaults, as a user starts."""

ASGI = "asgi"
"""``--transports`` entry of the generated server mounted in its example Starlette app (issue 26)."""
ASGI_HOST = "starlette"
"""The host app the ASGI subject is rendered into: Starlette, the minimal ASGI framework (FastAPI
adds its own routing and dependency layer on top; the WebSocket path is the same)."""

SOCKETIO = "+socketio"
"""Suffix of a ``--transports`` entry that benches the project's Socket.IO face (issue 24)."""

COMPILED = "+mypyc"
"""Suffix of a ``--transports`` entry that benches the project's mypyc build (``scripts/compile.py``)."""


def generated(
    project: Path, transport: str = "websockets", *, compiled: bool = False, socketio: bool = False
) -> Subject:
    """The generated chat project, run with ``python -m <package>`` on the named transport adapter.

    ``compiled``: ``project`` is a copy whose hot modules were compiled in place with mypyc.
    ``socketio``: the project serves Socket.IO (issue 24); bench that face of it (``/socket.io/``,
    the load generator's ``socketio`` dialect) instead of the native endpoint.
    """
    package = next(p.name for p in sorted((project / "src").iterdir()) if (p / "__main__.py").exists())
    if transport == ASGI:
        # The project's example host app (host_app/app.py: Starlette, the endpoint mounted at
        # /realtime) under uvicorn, one worker, as its README runs it: uvloop and httptools where
        # installed (uvicorn's "auto"), permessage-deflate off, uvicorn's default message size.
        path = os.pathsep.join([str(project / "src"), str(project), os.environ.get("PYTHONPATH", "")])
        argv = [sys.executable, "-m", "uvicorn", "host_app.app:app", "--lifespan", "on",
                "--ws-per-message-deflate", "false", "--log-level", "warning"]  # fmt: skip
        title = f"wsforge/asgi, mounted in {ASGI_HOST.title()} under uvicorn (generated)"
        return Subject("wsforge-asgi", title, "wsforge", "/realtime/ws", argv, {"PYTHONPATH": path}, project,
                       generated=True, transport=ASGI)  # fmt: skip
    env = {
        "PYTHONPATH": str(project / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "WS_TRANSPORT": transport,
    }
    name = ("wsforge" if transport == "websockets" else f"wsforge-{transport}") + (
        "-mypyc" if compiled else ""
    )
    title = f"wsforge/{transport}{', mypyc build' if compiled else ''} (generated)"
    argv = [sys.executable, "-m", package]
    if socketio:
        name, title = f"{name}-socketio", title.replace(" (generated)", ", Socket.IO face (generated)")
        return Subject(
            name, title, "socketio", "/socket.io/", argv, env, project, generated=True, transport=transport
        )
    return Subject(name, title, "wsforge", "/ws", argv, env, project, generated=True, transport=transport)


SCALE_OUT_CONNECTIONS = 200_000
"""Answer that makes step 2 scale the chat example out over Redis (see :func:`render_chat`)."""


def render_chat(
    repo: Path,
    out: Path,
    *,
    transport: str = "websockets",
    scale_out: bool = False,
    mounted_in: str = "",
    socketio: bool = False,
) -> Path:
    """Render ``examples/chat.yaml`` with this checkout's wsforge into ``out`` (replaced).

    The chat spec picks the websockets transport. ``transport="picows"`` renders it the way a team
    gets it by writing ``conventions: {transport: picows}`` into the project's memory: the project
    step 2 produces for throughput (the picows adapter, its tests, its dependencies and its
    compiled-build list), with every other decision unchanged.

    The chat example runs one instance, so its project ships only the in-process broker.
    ``scale_out=True`` answers :data:`SCALE_OUT_CONNECTIONS` connections instead: step 2 then
    scales it out over Redis and the project ships the Redis adapter the scale-out passes need.

    ``mounted_in="starlette"`` renders it mounted in that app (memory conventions ``existing_app``
    and ``mount_in_app``, as a team that runs one writes them): ``transport/asgi.py``, ``asgi.py``
    and the example host app ``host_app/app.py`` the ASGI subject runs.

    ``socketio=True`` adds the memory convention ``client_protocol: socketio``: the project then
    also serves Socket.IO clients at ``/socket.io/`` on the same core (issue 24).
    """
    answers = repo / "examples" / "chat.yaml"
    # Run outside the checkout: `wsforge new` keeps memory and claudedocs in its working directory.
    scratch = out.parent / f".{out.name}-wsforge"
    if scale_out:
        text = answers.read_text()
        changed = re.sub(
            r"(?m)^concurrent_connections: \d+$", f"concurrent_connections: {SCALE_OUT_CONNECTIONS}", text
        )
        assert changed != text, f"{answers}: no concurrent_connections answer to change"
        scratch.mkdir(parents=True, exist_ok=True)
        answers = scratch / "chat-scale-out.yaml"
        answers.write_text(changed)
    cmd = [sys.executable, "-m", "wsforge", "new", "chat-demo", "--answers", str(answers),
           "--non-interactive", "--output", str(out), "--force"]  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)  # --force keeps files an earlier render had and this one has not
    memory = scratch / "memory" / "websocket-engineer" / "chat-demo.yaml"
    memory.parent.mkdir(parents=True, exist_ok=True)
    memory.unlink(missing_ok=True)  # a run's memory would carry its decisions into the next one
    # At scale, step 2 would pick picows by itself: the transport is written down whenever memory is.
    if transport != "websockets" or scale_out or mounted_in or socketio:
        mount = f"  existing_app: {mounted_in}\n  mount_in_app: true\n" if mounted_in else ""
        mount += "  client_protocol: socketio\n" if socketio else ""
        memory.write_text(
            "schema_version: 1\nskill: websocket-engineer\nproject: chat-demo\n"
            f"conventions:\n  transport: {transport}\n{mount}"
        )
    subprocess.run(cmd, cwd=scratch, check=True, capture_output=True, timeout=300)
    rendered = (out / "wsforge.yaml").read_text()
    if f"\ntransport: {transport}\n" not in rendered:
        raise RuntimeError(f"{out}: rendered without the {transport} transport; see {out / 'wsforge.yaml'}")
    if mounted_in and not (out / "host_app" / "app.py").exists():
        raise RuntimeError(f"{out}: rendered without the {mounted_in} host app; see {out / 'wsforge.yaml'}")
    return out


def compiled_copy(project: Path) -> Path:
    """A copy of ``project`` in ``.work/<name>-mypyc`` (replaced), compiled in place by its own script.

    A copy, so that the pure-Python subjects keep running the sources; ``--check`` proves that the
    extensions, not the ``.py`` files, are what ``python -m <package>`` imports.
    """
    out = WORK / f"{project.name}-mypyc"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(project, out, ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"))
    script = out / "scripts" / "compile.py"
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, timeout=900)
    subprocess.run([sys.executable, str(script), "--check"], check=True, capture_output=True, timeout=120)
    return out
