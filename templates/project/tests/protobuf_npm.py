"""npm packages of the browser client's protobuf tests, installed once into the artifacts directory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from support import artifacts_dir, require_tool

NODE_PACKAGES = ("protobufjs@7", "ws@8")
"""protobufjs (the library static/protobuf.js runs on; its dist/ is what a page loads) and ws (Node's
WebSocket client, for the Node test)."""


def node_protobuf_dir() -> Path:
    """A ``node_modules`` holding :data:`NODE_PACKAGES`. Skips (fails under CI) without node or npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    require_tool(None if node and npm else "node and npm are needed for the browser client's protobuf tests")
    prefix = artifacts_dir() / "node-protobuf"
    wanted = [prefix / "node_modules" / name.split("@")[0] / "package.json" for name in NODE_PACKAGES]
    if not all(path.is_file() for path in wanted):
        prefix.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [str(npm), "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent", *NODE_PACKAGES],
            capture_output=True,
            text=True,
            timeout=300,
        )
        require_tool(None if result.returncode == 0 else f"npm install {NODE_PACKAGES} failed: {result.stderr[-500:]}")
    return prefix / "node_modules"
