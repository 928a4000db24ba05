"""Step 5's memory update: bounded logs, review findings in known_issues, the wire contract, quotes kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from wsforge import memory as memory_module
from wsforge.cli import main
from wsforge.memory import SKILL

from ..conftest import EXAMPLES


def _memory_path(workdir: Path) -> Path:
    return workdir / "memory" / SKILL / "chat-demo.yaml"


def _answers(workdir: Path, **changes: object) -> Path:
    data = yaml.safe_load((EXAMPLES / "chat.yaml").read_text())
    data.update(changes)
    path = workdir / "answers.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _new(answers: Path, *extra: str) -> int:
    return main(["new", "--answers", str(answers), "--non-interactive", "--force", *extra])


def test_memory_stays_bounded_over_many_runs(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compliance holds the last run's five steps; history keeps only the last MAX_HISTORY_ENTRIES runs."""
    monkeypatch.setattr(memory_module, "MAX_HISTORY_ENTRIES", 3)
    answers = _answers(workdir)
    sizes = []
    for _ in range(5):
        assert _new(answers) == 0
        sizes.append(len(_memory_path(workdir).read_text().splitlines()))
    data = yaml.safe_load(_memory_path(workdir).read_text())
    assert [c["step"] for c in data["compliance"]] == [1, 3, 2, 4, 5]  # memory is read before the design
    assert len(data["history"]) == 3
    assert all(h["review"] == "findings: none" for h in data["history"])
    assert sizes[3] == sizes[4], sizes  # once history is full, the file stops growing


def test_error_findings_become_known_issues_until_fixed(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unresolved error finding is recorded (source: review); a person's entries are never touched."""
    answers = _answers(workdir, allowed_origins=["*"])
    assert _new(answers) == 3
    path = _memory_path(workdir)
    data = yaml.safe_load(path.read_text())
    [issue] = data["known_issues"]
    assert issue["id"] == "WSF-SEC-003"
    assert issue["severity"] == "error"
    assert issue["source"] == "review"
    assert "allowed_origins" in issue["summary"]
    assert "known issue recorded: WSF-SEC-003" in data["history"][-1]["changes"]
    since = issue["since"]

    # A person adds their own known issue, with a comment; a second failing run keeps both.
    text = path.read_text().replace(
        "known_issues:\n",
        "known_issues:\n  - id: KI-7  # ours\n    summary: 'mobile app pins the v1 subprotocol'\n",
    )
    path.write_text(text)
    assert _new(answers) == 3
    data = yaml.safe_load(path.read_text())
    assert [i["id"] for i in data["known_issues"]] == ["KI-7", "WSF-SEC-003"]
    assert data["known_issues"][1]["since"] == since

    # Fixed: the review entry goes, the person's entry stays exactly as written.
    assert _new(_answers(workdir)) == 0
    text = path.read_text()
    data = yaml.safe_load(text)
    assert data["known_issues"] == [{"id": "KI-7", "summary": "mobile app pins the v1 subprotocol"}]
    assert "- id: KI-7  # ours\n    summary: 'mobile app pins the v1 subprotocol'" in text
    assert "known issue resolved: WSF-SEC-003" in data["history"][-1]["changes"]
    capsys.readouterr()


def test_quotes_a_person_wrote_survive_the_rewrite(workdir: Path) -> None:
    """ruamel round trip with preserve_quotes: '…' and "…" stay as written in conventions and answers."""
    answers = _answers(workdir)
    assert _new(answers) == 0
    path = _memory_path(workdir)
    text = path.read_text()
    text = text.replace("  project_name: chat-demo\n", '  project_name: "chat-demo"\n')
    assert '"chat-demo"' in text
    text += "conventions:\n  channel_separator: \":\"\n  jwt_audience: 'chat-api'  # our gateway\n"
    path.write_text(text)
    assert _new(answers) == 0
    text = path.read_text()
    assert '  project_name: "chat-demo"\n' in text
    assert '  channel_separator: ":"\n' in text
    assert "  jwt_audience: 'chat-api'  # our gateway\n" in text


def test_message_schema_and_versioning_are_recorded(workdir: Path) -> None:
    """The envelope, codecs, subprotocols, namespaces, each message's payload shape and the version policy."""
    assert _new(_answers(workdir)) == 0
    data = yaml.safe_load(_memory_path(workdir).read_text())
    schema = data["message_schema"]
    assert schema["protocol_version"] == 1
    assert schema["envelope"]["type"] == "type"
    assert schema["codecs"] and schema["subprotocols"][0].startswith("wsforge.v1.")
    assert "room" in schema["namespaces"]
    publish = schema["messages"]["PublishRequest"]
    assert publish["action"] == "const publish!"
    assert any(field.startswith("payload") for field in publish)
    versioning = data["versioning"]
    assert versioning["protocol_version"] == 1
    assert "v2" in versioning["breaking_change_policy"]


def test_breaking_memory_change_is_named_at_step_2_and_flagged_by_review(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Renaming an envelope field breaks deployed clients: step 2 (the design) says so, step 5 reports WSF-MEM-002."""
    answers = _answers(workdir)
    assert _new(answers) == 0
    capsys.readouterr()
    path = _memory_path(workdir)
    path.write_text(path.read_text() + "conventions:\n  envelope_fields: {type: t}\n")
    assert main(["review", "chat-demo", "--no-report", "--format", "json"]) == 0
    flagged = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["rule_id"] == "WSF-MEM-002"]
    assert flagged == []  # the project on disk still speaks the recorded contract

    assert _new(answers) == 0  # a warning: reported, not failing (use --fail-on warning to gate)
    err = capsys.readouterr().err
    step2 = next(line for line in err.splitlines() if line.startswith("step 2"))
    assert "breaks deployed clients: envelope field type renamed on the wire: type -> t" in step2
    review = (workdir / "claudedocs" / "websocket_review_chat-demo.md").read_text()
    assert "WSF-MEM-002" in review
    data = yaml.safe_load(path.read_text())
    assert any("breaks deployed clients" in change for change in data["history"][-1]["changes"])
    assert data["message_schema"]["envelope"]["type"] == "t"  # the new contract is now the recorded one


def test_regenerate_names_a_breaking_memory_change_at_step_2(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wsforge regenerate` after a breaking convention edit says so in its step 2 line, like `new`."""
    assert _new(_answers(workdir)) == 0
    path = _memory_path(workdir)
    path.write_text(path.read_text() + "conventions:\n  envelope_fields: {payload: p}\n")
    capsys.readouterr()
    assert main(["regenerate", "chat-demo"]) == 0
    step2 = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("step 2"))
    assert (
        "WARNING: breaks deployed clients: envelope field payload renamed on the wire: payload -> p" in step2
    )
