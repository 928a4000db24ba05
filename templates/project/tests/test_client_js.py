"""Runs the browser client's Node tests (``tests/js``) so one ``pytest`` covers the JS too.

The pure parts of ``static/client.js`` (backoff, offline queue, close codes, resume bookkeeping)
are tested with Node's built-in runner; the browser path is in ``test_browser_e2e.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
TIMEOUT_SCALE = float(os.environ.get("WS_TEST_TIMEOUT_SCALE", "1"))
"""Same variable as tests/support.py: stretches every timeout on slow machines."""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is not installed; the browser client tests need Node >= 20")
        pytest.skip("node is not installed (needs Node >= 20); set CI=true to make this a failure")
    return node


def test_client_js_node_suite_passes() -> None:
    """``node --test tests/js/`` exits 0."""
    result = subprocess.run(
        [_node(), "--test", "tests/js/"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60 * TIMEOUT_SCALE,
        check=False,
    )
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith("# "))
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
    assert "# fail 0" in summary, summary
