"""Every Python and JavaScript snippet of the README and the claudedocs documents runs.

The generated project's ``tests/test_doc_snippets.py`` extracts the snippets and runs each against
a real server (Python with the interpreter, JavaScript with Node and the browser client). The
project's own suite sees only its README; here it also gets the design documents this run wrote
to claudedocs (``WS_DOCS_DIRS``), for an example with client publishing and one without, and for
chat serving Socket.IO too (its snippets run with ``socket.io-client`` in Node and ``python-socketio``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wsforge.cli import main

from ..conftest import EXAMPLES


@pytest.mark.parametrize("example", ["chat", "public-ticker", "chat+socketio"])
def test_readme_and_claudedocs_snippets_run(
    example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name, _, variant = example.partition("+")
    project = tmp_path / name
    answers = EXAMPLES / f"{name}.yaml"
    if variant == "socketio":
        data = yaml.safe_load(answers.read_text(encoding="utf-8"))
        answers = tmp_path / f"{name}.answers.yaml"
        answers.write_text(yaml.safe_dump({**data, "client_protocol": "socketio"}), encoding="utf-8")
    assert main(["new", "--answers", str(answers), "--non-interactive", "--output", str(project)]) == 0
    docs = tmp_path / "claudedocs"
    assert sorted(docs.glob("websocket_client_*.md"))
    if variant == "socketio":  # the Socket.IO snippets are there to be run: Node, Python, in both documents
        for doc in [project / "README.md", *docs.glob("websocket_client_*.md")]:
            text = doc.read_text(encoding="utf-8")
            assert 'from "socket.io-client"' in text and "socketio.AsyncClient(" in text, doc.name
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
