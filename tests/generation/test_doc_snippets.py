"""Every Python and JavaScript snippet of the README and the claudedocs documents runs.

The generated project's ``tests/test_doc_snippets.py`` extracts the snippets and runs each against
a real server (Python with the interpreter, JavaScript with Node and the browser client). The
project's own suite sees only its README; here it also gets the design documents this run wrote
to claudedocs (``WS_DOCS_DIRS``), for an example with client publishing and one without.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wsforge.cli import main

from ..conftest import EXAMPLES


@pytest.mark.parametrize("example", ["chat", "public-ticker"])
def test_readme_and_claudedocs_snippets_run(
    example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    project = tmp_path / example
    answers = EXAMPLES / f"{example}.yaml"
    assert main(["new", "--answers", str(answers), "--non-interactive", "--output", str(project)]) == 0
    docs = tmp_path / "claudedocs"
    assert sorted(docs.glob("websocket_client_*.md"))
    env = {**os.environ, "WS_DOCS_DIRS": str(docs), "PYTHONPATH": str(project / "src")}
    env.pop("PYTEST_ADDOPTS", None)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "tests/test_doc_snippets.py",
        "-v",
    ]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    ran = [line for line in result.stdout.splitlines() if "PASSED" in line]
    assert any("websocket_client_" in line for line in ran), result.stdout[-3000:]
    assert any("README.md" in line for line in ran), result.stdout[-3000:]
