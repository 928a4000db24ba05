"""`wsforge new` end to end through the CLI entry point, one test per outcome."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wsforge.cli import main
from wsforge.memory import SKILL

from ..conftest import EXAMPLES

DOCS = ("architecture", "protocol", "server", "client", "review")


def _new(*args: str) -> int:
    return main(["new", *args])


def test_new_writes_project_docs_and_memory(workdir: Path, chat_answers: Path) -> None:
    """Steps 1-5 leave a project, five documents and a memory entry with the checklist."""
    assert _new("--answers", str(chat_answers), "--non-interactive") == 0
    project = workdir / "chat-demo"
    assert (project / "wsforge.yaml").is_file()
    assert (project / "src" / "chat_demo" / "protocol.py").is_file()
    assert (project / ".wsforge" / "manifest.json").is_file()
    for component in DOCS:
        assert (workdir / "claudedocs" / f"websocket_{component}_chat-demo.md").is_file(), component
    memory = yaml.safe_load((workdir / "memory" / SKILL / "chat-demo.yaml").read_text())
    assert [c["step"] for c in memory["compliance"]] == [1, 3, 2, 4, 5]  # memory before the design
    assert all(c["result"] == "ok" for c in memory["compliance"])
    assert memory["decisions"]
    assert "greenfield" in memory["compliance"][1]["detail"]


def test_memory_edit_is_honoured_on_next_run(workdir: Path, chat_answers: Path) -> None:
    """A person edits memory conventions; the next run applies them and says why."""
    assert _new("--answers", str(chat_answers), "--non-interactive") == 0
    path = workdir / "memory" / SKILL / "chat-demo.yaml"
    data = path.read_text()
    path.write_text(
        data + "conventions:\n  serialization: msgpack  # our mobile apps speak msgpack\n"
        "  max_payload_bytes: 65536\n"
    )
    assert _new("--answers", str(chat_answers), "--non-interactive", "--force") == 0
    spec = yaml.safe_load((workdir / "chat-demo" / "wsforge.yaml").read_text())
    assert spec["protocol"]["codecs"][0] == "msgpack"
    assert spec["limits"]["max_payload_bytes"] == 65536
    rows = {d["key"]: d for d in spec["decisions"]}
    assert rows["serialization"]["source"] == "memory"
    assert "memory convention" in rows["serialization"]["rationale"]
    text = path.read_text()
    assert "# our mobile apps speak msgpack" in text
    architecture = (workdir / "claudedocs" / "websocket_architecture_chat-demo.md").read_text()
    assert "memory" in architecture


def test_broken_memory_stops_before_writing(
    workdir: Path, chat_answers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable memory file: exit 1 naming file and line, memory and target untouched."""
    path = workdir / "memory" / SKILL / "chat-demo.yaml"
    path.parent.mkdir(parents=True)
    broken = "project: chat-demo\nskill: websocket-engineer\nconventions:\n  serialization: xml\n"
    path.write_text(broken)
    assert _new("--answers", str(chat_answers), "--non-interactive") == 1
    err = capsys.readouterr().err
    assert f"{path}:4: conventions.serialization" in err.replace("\n", "")
    assert path.read_text() == broken
    assert not (workdir / "chat-demo").exists()
    assert not (workdir / "claudedocs").exists()


def test_missing_answer_names_the_key(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--non-interactive with an answer missing: one line naming the key, exit 1."""
    data = yaml.safe_load((EXAMPLES / "chat.yaml").read_text())
    del data["latency_class"]
    answers = tmp_path / "partial.yaml"
    answers.write_text(yaml.safe_dump(data))
    assert _new("--answers", str(answers), "--non-interactive") == 1
    assert "latency_class" in capsys.readouterr().err


def test_no_terminal_and_no_answers_does_not_hang(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a TTY the wizard is not started: exit 1 with the fix in the message."""
    assert _new() == 1
    assert "--answers" in capsys.readouterr().err


def test_existing_target_needs_force(workdir: Path, chat_answers: Path) -> None:
    """A non-empty target is never overwritten without --force."""
    target = workdir / "chat-demo"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    assert _new("--answers", str(chat_answers), "--non-interactive") == 1
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]
    assert _new("--answers", str(chat_answers), "--non-interactive", "--force") == 0
    assert (target / "mine.txt").read_text() == "keep me"
    assert (target / "wsforge.yaml").exists()


def test_dry_run_writes_nothing(
    workdir: Path, chat_answers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints the plan and leaves the disk as it was."""
    assert _new("--answers", str(chat_answers), "--non-interactive", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "create" in out and "wsforge.yaml" in out
    assert list(workdir.iterdir()) == []


def test_name_argument_and_output_option(workdir: Path, chat_answers: Path) -> None:
    """NAME overrides project_name; --output picks the directory."""
    assert _new("team-chat", "--answers", str(chat_answers), "--non-interactive", "--output", "out/tc") == 0
    spec = yaml.safe_load((workdir / "out" / "tc" / "wsforge.yaml").read_text())
    assert spec["project"] == "team-chat"
    assert (workdir / "out" / "tc" / "src" / "team_chat").is_dir()


def test_bad_answers_file_exit_1(workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed answers file is a one-line error with file and line."""
    answers = tmp_path / "bad.yaml"
    answers.write_text("project_name: x\nuse_cases: [chat\n")
    assert _new("--answers", str(answers), "--non-interactive") == 1
    assert f"{answers}:" in capsys.readouterr().err.replace("\n", "")


def test_unknown_option_is_usage_error(workdir: Path) -> None:
    """Usage errors exit 2."""
    assert _new("--no-such-flag") == 2


def test_json_summary(workdir: Path, chat_answers: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json prints a machine-readable summary on stdout."""
    import json

    assert _new("--answers", str(chat_answers), "--non-interactive", "--format", "json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["project"] == "chat-demo"
    assert [c["step"] for c in summary["checklist"]] == [1, 3, 2, 4, 5]


def _star_origin_answers(workdir: Path) -> Path:
    data = yaml.safe_load((EXAMPLES / "chat.yaml").read_text())
    data["allowed_origins"] = ["*"]
    path = workdir / "star.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_new_exits_3_when_its_review_finds_errors_and_says_the_project_was_written(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Step 5 finding an error gives exit 3 like `wsforge review`, and the project, docs and memory stay."""
    answers = _star_origin_answers(workdir)
    assert _new("--answers", str(answers), "--non-interactive") == 3
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "step 5 review found 1 finding(s) at or above error (WSF-SEC-003)" in last
    assert f"the project was written to {workdir / 'chat-demo'}" in last
    assert (workdir / "chat-demo" / "wsforge.yaml").is_file()
    assert (workdir / "claudedocs" / "websocket_review_chat-demo.md").is_file()
    assert (workdir / "memory" / SKILL / "chat-demo.yaml").is_file()
    assert main(["review", "chat-demo", "--no-report"]) == 3


def test_new_fail_on_never_keeps_exit_0(workdir: Path) -> None:
    """`--fail-on never` opts out, as `wsforge review --fail-on never` does."""
    answers = _star_origin_answers(workdir)
    assert _new("--answers", str(answers), "--non-interactive", "--fail-on", "never") == 0


def test_new_dry_run_with_errors_exits_3_and_says_nothing_was_written(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dry run reaches the same verdict and says it wrote nothing."""
    answers = _star_origin_answers(workdir)
    assert _new("--answers", str(answers), "--non-interactive", "--dry-run") == 3
    assert "dry run: nothing was written" in capsys.readouterr().err
    assert sorted(p.name for p in workdir.iterdir()) == ["star.yaml"]
