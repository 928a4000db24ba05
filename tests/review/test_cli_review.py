"""`wsforge review`: exit codes, formats, the claudedocs document and memory known issues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.review.helpers import apply, base_data, write_spec
from wsforge.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_clean_spec_exits_0_and_writes_the_review_document(workdir: Path) -> None:
    """A clean wsforge.yaml exits 0 and leaves claudedocs/websocket_review_<project>.md."""
    spec = write_spec(workdir, base_data("chat"))
    assert main(["review", str(spec)]) == 0
    doc = workdir / "claudedocs" / "websocket_review_chat-demo.md"
    assert doc.read_text(encoding="utf-8").startswith("# WebSocket review: chat-demo")


def test_error_finding_exits_3(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An error-level finding fails the review with exit status 3 and a one-line reason."""
    spec = write_spec(workdir, apply(base_data("chat"), {"allowed_origins": ["*"]}))
    assert main(["review", str(spec), "--no-report"]) == 3
    captured = capsys.readouterr()
    assert "WSF-SEC-003" in captured.out
    assert "review failed: 1 finding(s) at or above error" in captured.err


def test_warning_fails_only_with_fail_on_warning(workdir: Path) -> None:
    """Warnings pass by default and fail with --fail-on warning."""
    spec = write_spec(workdir, apply(base_data("chat"), {"heartbeat.timeout_s": 3}))
    assert main(["review", str(spec), "--no-report"]) == 0
    assert main(["review", str(spec), "--no-report", "--fail-on", "warning"]) == 3


def test_fail_on_never_always_exits_0(workdir: Path) -> None:
    """--fail-on never reports without gating."""
    spec = write_spec(workdir, apply(base_data("chat"), {"allowed_origins": ["*"]}))
    assert main(["review", str(spec), "--no-report", "--fail-on", "never"]) == 0


def test_json_on_stdout(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json prints machine-readable findings on stdout only."""
    spec = write_spec(workdir, apply(base_data("chat"), {"reconnect.jitter": "none"}))
    assert main(["review", str(spec), "--no-report", "--format", "json"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert [f["rule_id"] for f in data["findings"] if f["rule_id"] != "WSF-DRF-003"] == ["WSF-RES-004"]


def test_sarif_to_a_file(workdir: Path) -> None:
    """--format sarif --output FILE writes a SARIF log CI can upload."""
    spec = write_spec(workdir, apply(base_data("chat"), {"reconnect.jitter": "none"}))
    out = workdir / "out" / "review.sarif"
    assert main(["review", str(spec), "--no-report", "--format", "sarif", "--output", str(out)]) == 3
    log = json.loads(out.read_text(encoding="utf-8"))
    assert log["version"] == "2.1.0"
    assert "WSF-RES-004" in [r["ruleId"] for r in log["runs"][0]["results"]]


def test_directory_holding_a_spec_is_reviewed_as_a_project(workdir: Path) -> None:
    """A directory with wsforge.yaml is a project: drift checks run too (no Dockerfile here)."""
    project = workdir / "proj"
    project.mkdir()
    write_spec(project, base_data("chat"))
    out = workdir / "r.json"
    assert main(["review", str(project), "--no-report", "--format", "json", "-o", str(out)]) == 0
    fired = {f["rule_id"] for f in json.loads(out.read_text(encoding="utf-8"))["findings"]}
    assert {"WSF-SCL-009", "WSF-DRF-002"} <= fired


def test_answers_file_is_derived_and_reviewed(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An answers file is turned into a spec by the decision engine, then reviewed."""
    assert main(["review", str(REPO / "examples" / "chat.yaml"), "--no-report", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["project"] == "chat-demo"


def test_answers_findings_point_at_the_answer_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A finding on a requirement names the answers file line that holds it."""
    answers = yaml.safe_load((REPO / "examples" / "chat.yaml").read_text(encoding="utf-8"))
    answers["allowed_origins"] = ["https://app.example.com", "http://app.example.com"]
    path = workdir / "answers.yaml"
    path.write_text(yaml.safe_dump(answers, sort_keys=False), encoding="utf-8")
    main(["review", str(path), "--no-report", "--format", "json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    sec = next(f for f in findings if f["rule_id"] == "WSF-SEC-005")
    assert str(path) == sec["file"]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[sec["line"] - 1] == "- http://app.example.com"


def test_missing_path_exits_1(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that does not exist is a user error (exit 1, one line)."""
    assert main(["review", str(workdir / "nope.yaml")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_invalid_spec_exits_1_naming_the_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid value in wsforge.yaml is reported with file, line and field."""
    spec = write_spec(workdir, apply(base_data("chat"), {"heartbeat.interval_s": -1}))
    assert main(["review", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "heartbeat.interval_s" in err and "wsforge.yaml:" in err


def test_known_issue_from_memory_is_reported(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Known issues in memory/websocket-engineer/<project>.yaml become WSF-MEM-001 warnings."""
    memory = workdir / "memory" / "websocket-engineer"
    memory.mkdir(parents=True)
    (memory / "chat-demo.yaml").write_text(
        "schema_version: 1\nskill: websocket-engineer\nproject: chat-demo\n"
        "known_issues:\n- id: KI-3\n  summary: presence flaps behind the corporate proxy\n",
        encoding="utf-8",
    )
    spec = write_spec(workdir, base_data("chat"))
    assert main(["review", str(spec), "--no-report", "--fail-on", "warning", "--format", "json"]) == 3
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [f["evidence"] for f in findings if f["rule_id"] == "WSF-MEM-001"] == [
        "KI-3: presence flaps behind the corporate proxy"
    ]
    assert main(["review", str(spec), "--no-report", "--fail-on", "warning", "--no-memory"]) == 0
