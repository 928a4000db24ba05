"""The servers under test: how to start each one, and which dialect the load generator speaks.

A subject is started as one process (two for scale-out), pinned with ``taskset``, on a port the
harness picked; it must listen on 127.0.0.1 only and run until SIGTERM.
"""

from __future__ import annotations

import os
import shutil
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

    def command(self, port: int, *, jwt_secret: str, heartbeat: float, redis_url: str = "") -> list[str]:
        argv = [*self.argv, "--port", str(port), "--heartbeat", str(heartbeat)]
        if jwt_secret:
            argv += ["--jwt-secret", jwt_secret]
        if redis_url:
            argv += ["--redis", redis_url]
        return argv


def _py(script: str) -> list[str]:
    return [sys.executable, str(BENCH / "peers" / script)]


PEERS: dict[str, Subject] = {
    "picows": Subject("picows", "raw picows", "wsforge", "/ws", _py("picows_peer.py")),
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
}


def generated(project: Path) -> Subject:
    """The generated chat project (part 2 of issue 7): run with ``python -m <package>``."""
    package = next(p.name for p in sorted((project / "src").iterdir()) if (p / "__main__.py").exists())
    env = {"PYTHONPATH": str(project / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return Subject(
        "wsforge", "wsforge (generated)", "wsforge", "/ws", [sys.executable, "-m", package], env, project
    )
