"""The templates' contract: every matrix case renders, and its own gates pass.

For each case the generated project's ``ruff check``, ``ruff format --check``, ``mypy`` and
``pytest`` run in subprocesses, in this environment (the ``test`` extra installs what the
generated suites need). A compiled case builds the project's mypyc modules in place first
(``scripts/compile.py``, then ``--check`` that they are what imports), so the same suite runs on
them. A failure prints the tool's output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wsforge.cli import main

from .matrix import CASES, Case, case_answers

# The suite runs under pytest-xdist with ``--dist loadfile``, this file first (tests/conftest.py):
# its cases go to one worker, one after another (two generated suites at once on two cores
# would starve each other's timing-sensitive tests), while the rest of wsforge's suite, mostly
# waiting on subprocesses and npm, runs beside them. (``xdist_group`` would say it per test, but
# pytest-xdist 3.8 cannot group under pytest 9: it renames ``Item._nodeid``, which pytest 9 no
# longer reads.)
pytestmark = pytest.mark.slow  # renders every case and runs each project's own suite (browser tests included)

CHECKS: list[tuple[str, list[str]]] = [
    ("ruff check", [sys.executable, "-m", "ruff", "check", "."]),
    ("ruff format", [sys.executable, "-m", "ruff", "format", "--check", "."]),
    ("mypy", [sys.executable, "-m", "mypy", "src", "tests"]),
]
COMPILE: list[tuple[str, list[str]]] = [
    ("compile", [sys.executable, "scripts/compile.py"]),
    ("compiled", [sys.executable, "scripts/compile.py", "--check"]),
]
PYTEST = ("pytest", [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"])


def gates(case: Case, mypy_cache: Path | None = None) -> list[tuple[str, list[str]]]:
    """Static checks on the sources, then (for a compiled case) the mypyc build, then the tests.

    ``mypy_cache``: one cache directory shared by every case. The cases import the same libraries
    (websockets, picows, redis, pytest, hypothesis, ...), whose analysis is most of a cold mypy run;
    the projects' own modules are re-checked whenever their source differs (mypy compares hashes).
    """
    checks = [
        (name, [*command, "--cache-dir", str(mypy_cache)] if name == "mypy" and mypy_cache else command)
        for name, command in CHECKS
    ]
    return [*checks, *(COMPILE if case.compiled else []), PYTEST]


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def render_case(case: Case, workdir: Path) -> Path:
    """Render one case with the real CLI (memory conventions written as a person would)."""
    answers = case_answers(case)
    answers_path = workdir / f"{case.name}.answers.yaml"
    answers_path.write_text(yaml.safe_dump(answers))
    if case.conventions:
        memory = workdir / "memory" / "websocket-engineer" / f"{answers['project_name']}.yaml"
        memory.parent.mkdir(parents=True, exist_ok=True)
        memory.write_text(
            yaml.safe_dump(
                {
                    "project": answers["project_name"],
                    "skill": "websocket-engineer",
                    "conventions": case.conventions,
                }
            )
        )
    target = workdir / case.name
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        code = main(["new", "--answers", str(answers_path), "--non-interactive", "--output", str(target)])
    finally:
        os.chdir(cwd)
    assert code == 0, f"wsforge new failed for {case.name}"
    return target


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_generated_project_passes_its_gates(case: Case, tmp_path: Path, mypy_cache: Path) -> None:
    """ruff, mypy and the generated project's own tests pass."""
    project = render_case(case, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "WS_ARTIFACTS_DIR": str(project / "artifacts")}
    env.pop("PYTEST_ADDOPTS", None)
    for name, command in gates(case, mypy_cache):
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=900)
        summary = (result.stdout[-6000:] + "\n" + result.stderr[-3000:]).strip()
        assert result.returncode == 0, f"[{case.name}] {name} failed:\n{summary}"
        if name == "pytest":
            last = summary.splitlines()[-1]
            print(f"[{case.name}] {last}")
            if os.environ.get("CI") == "true":
                # Under CI every tool is installed: a skip can only be a test that does not apply to
                # this project, and such a test must not be rendered for it at all.
                assert "skipped" not in last, f"[{case.name}] generated tests skipped under CI: {last}"
