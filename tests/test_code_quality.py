"""wsforge holds itself to the bar it sets for generated code: ruff and mypy --strict pass."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_ruff_check() -> None:
    """No lint findings in the tool, its tests or the benchmark."""
    result = _run("ruff", "check", "wsforge", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    """The tool's code, tests and benchmark are formatted."""
    result = _run("ruff", "format", "--check", "wsforge", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    """The tool, its tests and the benchmark type-check under mypy --strict."""
    result = _run("mypy", "wsforge", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr
