"""Templates and schemas ship inside the wheel: install it in a fresh venv and run from elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import EXAMPLES, REPO
from .fresh_venv import install_in_fresh_venv

pytestmark = pytest.mark.slow  # builds the wheel and installs it in a fresh venv


def test_wheel_installs_and_generates_outside_checkout(tmp_path: Path) -> None:
    """`pip install <wheel>` then `wsforge new` in an unrelated directory writes a project and docs."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("wsforge-*.whl"))
    env_dir = tmp_path / "venv"
    py, _ = install_in_fresh_venv(wheel, env_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    answers = elsewhere / "answers.yaml"
    answers.write_text((EXAMPLES / "chat.yaml").read_text())
    result = subprocess.run(
        [str(env_dir / "bin" / "wsforge"), "new", "--answers", "answers.yaml", "--non-interactive"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    located = subprocess.run(
        [str(py), "-c", "import wsforge._resources as r; print(r.templates_dir())"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert located.startswith(str(env_dir)) and str(REPO) not in located
    assert (elsewhere / "chat-demo" / "src" / "chat_demo").is_dir()
    assert (elsewhere / "claudedocs" / "websocket_architecture_chat-demo.md").is_file()
