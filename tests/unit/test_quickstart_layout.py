"""The README quickstart leaves a fresh clone clean, and the committed sample run is portable."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import EXAMPLES, REPO

SAMPLE = EXAMPLES / "sample-run"
QUICKSTART_OUTPUTS = (
    "chat-demo/README.md",
    "claudedocs/websocket_review_chat-demo.md",
    "memory/websocket-engineer/chat-demo.yaml",
)

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and a checkout"
)


def _git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_repository_tracks_no_run_output_in_memory_or_claudedocs() -> None:
    """memory/ and claudedocs/ hold only a README; the sample run lives in examples/sample-run/."""
    tracked = _git("ls-files", "memory", "claudedocs", cwd=REPO).stdout.split()
    assert sorted(tracked) == ["claudedocs/README.md", "memory/README.md"]
    for path in QUICKSTART_OUTPUTS:
        assert _git("check-ignore", "-q", path, cwd=REPO).returncode == 0, path


def test_quickstart_command_leaves_git_status_clean(tmp_path: Path) -> None:
    """`wsforge new --answers examples/chat.yaml --non-interactive` in a checkout changes nothing git tracks.

    The checkout is this repository's .gitignore, READMEs and examples, committed in a scratch repository,
    so the test sees the working tree's rules, not the last commit's.
    """
    for name in (".gitignore", "memory/README.md", "claudedocs/README.md", "examples/chat.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    _git("init", "-q", cwd=tmp_path)
    _git("add", ".", cwd=tmp_path)
    commit = _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "checkout", cwd=tmp_path)
    assert commit.returncode == 0, commit.stderr
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    env.pop("WSFORGE_MEMORY_DIR", None)
    env.pop("WSFORGE_CLAUDEDOCS_DIR", None)
    run = subprocess.run(
        [sys.executable, "-m", "wsforge", "new", "--answers", "examples/chat.yaml", "--non-interactive"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "greenfield" in run.stderr  # a first-time user sees step 3's greenfield path
    for path in QUICKSTART_OUTPUTS:
        assert (tmp_path / path).is_file(), path
    assert _git("status", "--porcelain", "--untracked-files=all", cwd=tmp_path).stdout == ""


def test_sample_run_holds_no_machine_paths() -> None:
    """The committed sample names paths relative to the repository, not the machine it was made on."""
    files = sorted(p for d in ("claudedocs", "memory") for p in (SAMPLE / d).rglob("*") if p.is_file())
    assert {p.suffix for p in files} >= {".md", ".yaml"}
    absolute = re.compile(r"(?<![\w.])/(?:tmp|work|home|root|Users|var)/")
    assert [str(p) for p in files if absolute.search(p.read_text())] == []
