"""Every input file wsforge reads turns a hostile or broken file into one error line, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wsforge._yaml import MAX_INPUT_BYTES, load_yaml_with_lines
from wsforge.cli import main
from wsforge.memory import SKILL

from ..conftest import EXAMPLES


def _bomb() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        prev, cur = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "latin1": ("project_name: café\n".encode("latin-1"), "not UTF-8 text"),
    "recursive-alias": (b"project_name: x\nallowed_origins: &a {0: *a}\n", "recursive alias"),
    "alias-bomb": (_bomb().encode(), "aliases expand to more than"),
    "too-large": (b"project_name: x\n" + b"#" * (MAX_INPUT_BYTES + 1) + b"\n", "larger than"),
    "too-deep": (b"a: " + b"[" * 500 + b"]" * 500 + b"\n", "nested deeper than"),
}


def _one_error_line(err: str, name: str, problem: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_answers_file_is_one_line(case: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wsforge new --answers` names the file and the problem, exits 1 and writes nothing."""
    content, problem = BAD_FILES[case]
    (workdir / "bad.yaml").write_bytes(content)
    assert main(["new", "--answers", "bad.yaml", "--non-interactive"]) == 1
    _one_error_line(capsys.readouterr().err, "bad.yaml", problem)
    assert sorted(p.name for p in workdir.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_memory_file_is_one_line_and_left_untouched(
    case: str, workdir: Path, chat_answers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken memory file stops `new` before anything is written, and is not rewritten."""
    content, problem = BAD_FILES[case]
    path = workdir / "memory" / SKILL / "chat-demo.yaml"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert main(["memory", "validate", "chat-demo"]) == 1
    _one_error_line(capsys.readouterr().err, "chat-demo.yaml", problem)
    assert main(["new", "--answers", str(chat_answers), "--non-interactive"]) == 1
    _one_error_line(capsys.readouterr().err, "chat-demo.yaml", problem)
    assert path.read_bytes() == content
    assert not (workdir / "chat-demo").exists()


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_review_input_is_one_line(case: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wsforge review FILE` and `wsforge review PROJECT` (its wsforge.yaml) both give one line."""
    content, problem = BAD_FILES[case]
    (workdir / "input.yaml").write_bytes(content)
    assert main(["review", "input.yaml", "--no-report"]) == 1
    _one_error_line(capsys.readouterr().err, "input.yaml", problem)
    (workdir / "proj").mkdir()
    (workdir / "proj" / "wsforge.yaml").write_bytes(content)
    assert main(["review", "proj", "--no-report"]) == 1
    _one_error_line(capsys.readouterr().err, "wsforge.yaml", problem)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_spec_in_project_is_one_line_on_regenerate(
    case: str, workdir: Path, chat_answers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wsforge regenerate` on a project whose wsforge.yaml is hostile stops with one line, writes nothing."""
    shutil.copy(chat_answers, workdir / "answers.yaml")
    assert main(["new", "--answers", "answers.yaml", "--non-interactive"]) == 0
    capsys.readouterr()
    content, problem = BAD_FILES[case]
    spec = workdir / "chat-demo" / "wsforge.yaml"
    spec.write_bytes(content)
    assert main(["regenerate", "chat-demo"]) == 1
    _one_error_line(capsys.readouterr().err, "wsforge.yaml", problem)
    assert spec.read_bytes() == content


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_agent_config_is_one_line(case: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """wsforge.config.yaml goes through the same reader."""
    content, problem = BAD_FILES[case]
    (workdir / "wsforge.config.yaml").write_bytes(content)
    assert main(["memory", "path", "demo"]) == 1
    _one_error_line(capsys.readouterr().err, "wsforge.config.yaml", problem)


def test_shared_aliases_within_the_bound_still_load() -> None:
    """An ordinary alias (a shared list) is fine: only cycles and expansion past the bound are refused."""
    data, _ = load_yaml_with_lines("a: &o [https://a.example]\nb: *o\n")
    assert data == {"a": ["https://a.example"], "b": ["https://a.example"]}


def test_examples_still_load() -> None:
    """The shipped answers files pass the bounded reader."""
    for path in EXAMPLES.glob("*.yaml"):
        assert load_yaml_with_lines(path.read_text())[0]
