"""Help text, shell completion and the wording of validation errors (what a new user reads first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wsforge.cli import main
from wsforge.memory import SKILL

REPO = Path(__file__).resolve().parents[2]


def _wsforge(*args: str, columns: int = 200, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS=str(columns), NO_COLOR="1", TERM="dumb")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if home is not None:
        env.update(HOME=str(home), SHELL="/bin/bash")
    return subprocess.run(
        [sys.executable, "-m", "wsforge", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_install_completion_works(tmp_path: Path) -> None:
    """typer's completion is switched on: --install-completion writes the bash script and exits 0."""
    result = _wsforge("--install-completion", "bash", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".bash_completions" / "wsforge.sh").is_file()
    assert "--install-completion" in _wsforge("--help").stdout


def test_help_paragraphs_are_not_broken_mid_sentence() -> None:
    """Docstring paragraphs are reflowed to the terminal, not cut where the source line ended."""
    text = _wsforge("review", "--help").stdout
    assert (
        "Every finding has a stable rule id (docs/review-rules.md), the offending key with file and line, "
        "why it matters and the fix." in text
    ), text
    assert "claudedocs/websocket_review_<project>.md" in text


def test_format_options_list_their_choices() -> None:
    """`new --format` shows text|json; `replay --format` lists exactly what it accepts."""
    new_help = _wsforge("new", "--help").stdout
    assert "<text|json>" in new_help
    assert "<str>" not in next(line for line in new_help.splitlines() if "--format" in line)
    replay_help = _wsforge("replay", "--help").stdout
    assert "<table|json>" in replay_help
    assert main(["replay", "--format", "sarif", "rec.jsonl", "ws://127.0.0.1:1/ws"]) == 2


def test_unknown_answers_key_suggests_the_close_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serialisation` names `serialization`, with the file and line, before any missing-answer noise."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text("project_name: x\nserialisation: json\n")
    assert main(["new", "--answers", "a.yaml", "--non-interactive"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == "error: a.yaml:2: serialisation: unknown key; did you mean 'serialization'?"
    )


def test_unknown_memory_key_suggests_the_close_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nested keys too: a memory convention `serialisation` points at `serialization`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WSFORGE_MEMORY_DIR", raising=False)
    path = tmp_path / "memory" / SKILL / "demo.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("project: demo\nconventions:\n  serialisation: json\n")
    assert main(["memory", "validate", "demo"]) == 1
    assert "conventions.serialisation: unknown key; did you mean 'serialization'?" in capsys.readouterr().err


def test_errors_do_not_carry_pydantics_value_error_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The validator's own sentence, without "Value error, "."""
    monkeypatch.chdir(tmp_path)
    lines = (REPO / "examples" / "chat.yaml").read_text().splitlines()
    lines = [line for line in lines if not line.startswith("allowed_origins:")]
    (tmp_path / "a.yaml").write_text("\n".join([*lines, "allowed_origins: [ftp://x]", ""]))
    assert main(["new", "--answers", "a.yaml", "--non-interactive"]) == 1
    err = capsys.readouterr().err
    assert "allowed_origins: 'ftp://x' is not an origin like https://app.example.com" in err
    assert "Value error" not in err
