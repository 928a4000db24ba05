"""`wsforge regenerate` end to end through the CLI entry point, on real files in a temp dir."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from wsforge.cli import main

from .helpers import (
    PACKAGE,
    SETTINGS,
    add_conventions,
    edit,
    generate,
    memory_file,
    payload_line,
    regenerate,
    snapshot,
)

EXIT_CONFLICTS = 4


def _spec(project: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((project / "wsforge.yaml").read_text())
    return spec


def test_user_edits_survive_and_memory_decision_is_applied(workdir: Path) -> None:
    """Your edits (kept file, merged file, own file) survive; memory's new decisions land."""
    project = generate(workdir)
    protocol = project / f"src/{PACKAGE}/protocol.py"
    protocol.write_text(protocol.read_text() + "\n\ndef our_helper() -> int:\n    return 42\n")
    edit(project / SETTINGS, "port: int = 8765", "port: int = 9000  # our port")
    own = project / f"src/{PACKAGE}/extra.py"
    own.write_text("X = 1\n")
    add_conventions(workdir, "  serialization: msgpack  # mobile apps\n  max_payload_bytes: 65536\n")

    assert regenerate(project) == 0

    assert "def our_helper() -> int:" in protocol.read_text()
    settings = (project / SETTINGS).read_text()
    assert "port: int = 9000  # our port" in settings
    assert payload_line(project).strip() == "max_payload_bytes: int = 65536"
    assert settings.index("Codec.MSGPACK") < settings.index("Codec.JSON")
    assert own.read_text() == "X = 1\n"
    spec = _spec(project)
    assert spec["protocol"]["codecs"][0] == "msgpack"
    assert spec["limits"]["max_payload_bytes"] == 65536
    memory = yaml.safe_load(memory_file(workdir).read_text())
    last = memory["history"][-1]
    assert last["event"] == "regenerated"
    changes = "\n".join(last["changes"])
    assert "limits.max_payload_bytes: 8192 -> 65536 (memory conventions.max_payload_bytes)" in changes
    assert "conventions.serialization" in changes
    assert "merge" in changes  # the file summary: settings.py was merged
    review = (workdir / "claudedocs" / "websocket_review_chat-demo.md").read_text()
    assert "conventions.max_payload_bytes" in review


def test_conflicting_edit_writes_markers_and_exits_4(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """You and memory change the same line: markers, the path listed, exit 4 until resolved."""
    project = generate(workdir)
    theirs_line = payload_line(project)
    edit(project / SETTINGS, theirs_line, theirs_line.split("=")[0] + "= 4096  # ours")
    add_conventions(workdir, "  max_payload_bytes: 65536\n")
    capsys.readouterr()

    assert regenerate(project) == EXIT_CONFLICTS
    err = capsys.readouterr().err
    assert SETTINGS in err and "conflict" in err
    text = (project / SETTINGS).read_text()
    assert "<<<<<<< yours" in text and ">>>>>>> wsforge" in text
    assert "= 4096  # ours" in text and "max_payload_bytes: int = 65536" in text
    manifest = json.loads((project / ".wsforge/manifest.json").read_text())
    assert manifest["conflicts"] == [SETTINGS]

    assert regenerate(project) == EXIT_CONFLICTS, "an unresolved conflict keeps the exit status"
    resolved = "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("<<<<<<<", "=======", ">>>>>>>")) and "= 4096  # ours" not in line
    )
    (project / SETTINGS).write_text(resolved + "\n")
    assert regenerate(project) == 0


def test_rej_style_keeps_your_file_and_writes_the_patch(workdir: Path) -> None:
    """--conflict rej: your file is left as it is; wsforge's change is in settings.py.rej."""
    project = generate(workdir)
    theirs_line = payload_line(project)
    edit(project / SETTINGS, theirs_line, theirs_line.split("=")[0] + "= 4096  # ours")
    yours = (project / SETTINGS).read_bytes()
    add_conventions(workdir, "  max_payload_bytes: 65536\n")

    assert regenerate(project, "--conflict", "rej") == EXIT_CONFLICTS
    assert (project / SETTINGS).read_bytes() == yours
    patch = (project / (SETTINGS + ".rej")).read_text()
    assert "+    max_payload_bytes: int = 65536" in patch
    assert "-    max_payload_bytes: int = 8192" in patch


def test_regenerate_with_no_changes_is_a_noop(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing changed: no file in the project, memory or docs is rewritten (mtimes equal)."""
    project = generate(workdir)
    (project / "NOTES.md").write_text("ours\n")
    edit(project / SETTINGS, "port: int = 8765", "port: int = 9000")
    before = snapshot(project, workdir / "memory", workdir / "claudedocs")
    time.sleep(0.01)  # not a timing assertion: only makes a rewrite visible in mtime_ns
    capsys.readouterr()

    assert regenerate(project) == 0

    assert snapshot(project, workdir / "memory", workdir / "claudedocs") == before
    assert "up to date" in capsys.readouterr().out


def test_unreadable_memory_aborts_before_anything_is_touched(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A memory file that does not validate: exit 1 naming file and line; nothing written."""
    project = generate(workdir)
    edit(project / "wsforge.yaml", "max_payload_bytes: 8192", "max_payload_bytes: 70000")
    add_conventions(workdir, "  serialization: xml\n")
    before = snapshot(project, workdir / "memory", workdir / "claudedocs")
    capsys.readouterr()

    assert regenerate(project) == 1

    err = capsys.readouterr().err.replace("\n", "")
    assert f"{memory_file(workdir)}:" in err and "conventions.serialization" in err
    assert snapshot(project, workdir / "memory", workdir / "claudedocs") == before


def test_unreadable_spec_aborts_before_anything_is_touched(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wsforge.yaml that does not parse (or validate): exit 1 with file:line; nothing written."""
    project = generate(workdir)
    add_conventions(workdir, "  max_payload_bytes: 65536\n")
    spec = project / "wsforge.yaml"
    spec.write_text(spec.read_text().replace("limits:\n", "limits:\n  - [broken\n", 1))
    before = snapshot(project, workdir / "memory", workdir / "claudedocs")
    capsys.readouterr()

    assert regenerate(project) == 1
    assert f"{spec}:" in capsys.readouterr().err.replace("\n", "")
    assert snapshot(project, workdir / "memory", workdir / "claudedocs") == before

    spec.write_text(
        spec.read_text().replace("  - [broken\n", "", 1).replace("rate_burst: 20", "rate_burst: 0")
    )
    before = snapshot(project, workdir / "memory", workdir / "claudedocs")
    assert regenerate(project) == 1
    assert "limits.rate_burst" in capsys.readouterr().err.replace("\n", "")
    assert snapshot(project, workdir / "memory", workdir / "claudedocs") == before


def _pretend_generated(project: Path, files: dict[str, bytes]) -> None:
    """Make ``files`` part of the last render (as an older wsforge would have generated them)."""
    manifest_path = project / ".wsforge/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for path, content in files.items():
        digest = hashlib.sha256(content).hexdigest()
        manifest["files"][path] = digest
        (project / ".wsforge/pristine" / digest).write_bytes(content)
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_bytes(content)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_files_no_longer_generated_are_removed_only_if_unmodified(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An untouched obsolete file is deleted (and its empty folder); one you changed is kept."""
    project = generate(workdir)
    _pretend_generated(
        project,
        {f"src/{PACKAGE}/legacy/old.py": b"OLD = 1\n", f"src/{PACKAGE}/legacy_kept.py": b"KEPT = 1\n"},
    )
    (project / f"src/{PACKAGE}/legacy_kept.py").write_text("KEPT = 2  # ours\n")
    capsys.readouterr()

    assert regenerate(project) == 0

    assert not (project / f"src/{PACKAGE}/legacy").exists()
    assert (project / f"src/{PACKAGE}/legacy_kept.py").read_text() == "KEPT = 2  # ours\n"
    out = capsys.readouterr().out
    assert f"delete    src/{PACKAGE}/legacy/old.py" in out
    assert f"keep      src/{PACKAGE}/legacy_kept.py" in out
    manifest = json.loads((project / ".wsforge/manifest.json").read_text())
    assert f"src/{PACKAGE}/legacy_kept.py" not in manifest["files"]
    assert len(list((project / ".wsforge/pristine").iterdir())) == len(set(manifest["files"].values()))


def test_files_you_deleted_stay_deleted_unless_wsforge_changed_them(workdir: Path) -> None:
    """Deleted and unchanged upstream: stays deleted. Deleted but changed upstream: a conflict."""
    project = generate(workdir)
    (project / f"src/{PACKAGE}/protocol.py").unlink()
    (project / SETTINGS).unlink()
    add_conventions(workdir, "  max_payload_bytes: 65536\n")

    assert regenerate(project, "--conflict", "rej") == EXIT_CONFLICTS

    assert not (project / f"src/{PACKAGE}/protocol.py").exists()
    assert not (project / SETTINGS).exists()
    assert "max_payload_bytes: int = 65536" in (project / (SETTINGS + ".rej")).read_text()


def test_dry_run_writes_nothing_and_shows_plan_and_diff(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints update/keep/merge rows and a unified diff; every file stays as it was."""
    project = generate(workdir)
    edit(project / SETTINGS, "port: int = 8765", "port: int = 9000")
    add_conventions(workdir, "  max_payload_bytes: 65536\n")
    before = snapshot(project, workdir / "memory", workdir / "claudedocs")
    capsys.readouterr()

    assert regenerate(project, "--dry-run") == 0

    out = capsys.readouterr().out
    assert f"merge     {SETTINGS}" in out
    assert "update    wsforge.yaml" in out
    assert f"--- a/{SETTINGS}" in out and "+    max_payload_bytes: int = 65536" in out
    assert snapshot(project, workdir / "memory", workdir / "claudedocs") == before

    edit(project / SETTINGS, payload_line(project), "    max_payload_bytes: int = 1")
    before = snapshot(project, workdir / "memory", workdir / "claudedocs")
    assert regenerate(project, "--dry-run") == EXIT_CONFLICTS
    assert snapshot(project, workdir / "memory", workdir / "claudedocs") == before


def test_hand_edit_of_spec_wins_over_memory_until_its_line_is_deleted(workdir: Path) -> None:
    """wsforge.yaml is this project's intent: a hand-edited limit beats memory; delete it to hand back."""
    project = generate(workdir)
    spec_path = project / "wsforge.yaml"
    edit(spec_path, "max_payload_bytes: 8192", "max_payload_bytes: 70000  # big documents")
    add_conventions(workdir, "  max_payload_bytes: 65536\n  rate_per_s: 20\n")

    assert regenerate(project) == 0

    text = spec_path.read_text()
    assert "max_payload_bytes: 70000  # big documents" in text
    spec = yaml.safe_load(text)
    assert spec["limits"]["rate_per_s"] == 20  # the other convention still applies
    row = next(d for d in spec["decisions"] if d["key"] == "limits.max_payload_bytes")
    assert (row["value"], row["source"]) == (70000, "requirement")
    assert "edited by hand" in row["rationale"] and "65536" in row["rationale"]
    assert payload_line(project).strip() == "max_payload_bytes: int = 70000"

    assert regenerate(project) == 0, "the hand edit persists across runs"
    assert _spec(project)["limits"]["max_payload_bytes"] == 70000

    edit(spec_path, "  max_payload_bytes: 70000  # big documents\n", "")
    assert regenerate(project) == 0
    assert _spec(project)["limits"]["max_payload_bytes"] == 65536
    assert payload_line(project).strip() == "max_payload_bytes: int = 65536"


def test_requirement_edit_in_spec_redesigns(workdir: Path) -> None:
    """Editing a requirement in wsforge.yaml re-runs the tables; memory records why."""
    project = generate(workdir)
    edit(project / "wsforge.yaml", "avg_payload_bytes: 400", "avg_payload_bytes: 4000")

    assert regenerate(project) == 0

    spec = _spec(project)
    assert spec["requirements"]["avg_payload_bytes"] == 4000
    assert spec["limits"]["max_payload_bytes"] > 8192
    changes = yaml.safe_load(memory_file(workdir).read_text())["history"][-1]["changes"]
    assert any(c.startswith("requirements.avg_payload_bytes: 400 -> 4000") for c in changes)
    assert any(
        c.startswith("limits.max_payload_bytes") and "after the requirement change" in c for c in changes
    )


def test_new_over_an_existing_project_merges_unless_forced(workdir: Path) -> None:
    """`wsforge new` again keeps your edits through the same merge; --force overwrites."""
    project = generate(workdir)
    protocol = project / f"src/{PACKAGE}/protocol.py"
    protocol.write_text(protocol.read_text() + "\nOURS = 1\n")
    add_conventions(workdir, "  max_payload_bytes: 65536\n")
    answers = ["new", "--answers", str(Path(__file__).parents[2] / "examples/chat.yaml"), "--non-interactive"]

    assert main(answers) == 0
    assert protocol.read_text().endswith("\nOURS = 1\n")
    assert payload_line(project).strip() == "max_payload_bytes: int = 65536"

    assert main([*answers, "--force"]) == 0
    assert "OURS = 1" not in protocol.read_text()


def test_missing_memory_that_was_used_last_time_refuses(
    workdir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run from elsewhere (memory not found) after memory shaped the project: exit 1, untouched."""
    project = generate(workdir)
    add_conventions(workdir, "  max_payload_bytes: 65536\n")
    assert regenerate(project) == 0
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    before = snapshot(project)
    capsys.readouterr()

    assert regenerate(project) == 1
    assert "memory" in capsys.readouterr().err
    assert snapshot(project) == before


def test_not_a_wsforge_project(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory without .wsforge/manifest.json: exit 1 with the fix."""
    assert regenerate(workdir) == 1
    assert "wsforge new" in capsys.readouterr().err


def test_missing_pristine_copies_update_untouched_files_and_never_overwrite_yours(workdir: Path) -> None:
    """Without .wsforge/pristine: untouched files (hash = manifest) update; a changed one conflicts."""
    import shutil

    project = generate(workdir)
    shutil.rmtree(project / ".wsforge/pristine")
    edit(project / SETTINGS, "port: int = 8765", "port: int = 9000  # ours")
    add_conventions(workdir, "  max_payload_bytes: 65536\n")

    assert regenerate(project) == EXIT_CONFLICTS

    text = (project / SETTINGS).read_text()
    assert "port: int = 9000  # ours" in text and "<<<<<<< yours" in text
    assert _spec(project)["limits"]["max_payload_bytes"] == 65536
    manifest = json.loads((project / ".wsforge/manifest.json").read_text())
    assert {p.name for p in (project / ".wsforge/pristine").iterdir()} == set(manifest["files"].values())


def test_regenerate_exits_3_when_its_review_finds_errors(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec edit that step 5 rejects (a wildcard Origin) fails the run like `new` does; the merge
    itself is still written, and `--fail-on never` opts out."""
    project = generate(workdir)
    spec_file = project / "wsforge.yaml"
    text = spec_file.read_text()
    start = text.index("allowed_origins:\n")
    end = text.index("\n", text.index("\n- ", start) + 1)
    spec_file.write_text(text[:start] + "allowed_origins:\n- '*'" + text[end:])

    assert regenerate(project) == 3
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "step 5 review found" in last and "WSF-SEC-003" in last
    assert f"the project was written to {project}" in last
    assert regenerate(project, "--fail-on", "never") == 0


@pytest.mark.slow  # runs mypy over the regenerated project
def test_scaling_out_adds_the_broker_adapter_and_the_project_still_checks(workdir: Path) -> None:
    """A single-instance project ships only the in-process broker; a requirement edit that makes it
    scale out over Redis adds the adapter, its circuit breaker and their tests (new files through
    the same three-way merge), and the result passes its own static gates."""
    project = generate(workdir)
    broker = project / f"src/{PACKAGE}/broker"
    shipped = {"redis.py", "nats.py", "breaker.py"} & {p.name for p in broker.iterdir()}
    assert shipped == set(), "a memory:// project ships no networked adapter"
    assert not (project / "tests/test_broker_health.py").exists()
    edit(project / "wsforge.yaml", "concurrent_connections: 5000", "concurrent_connections: 200000")

    assert regenerate(project) == 0

    spec = _spec(project)
    assert spec["scaling"]["strategy"].startswith("redis"), spec["scaling"]
    assert {p.name for p in broker.iterdir()} >= {"redis.py", "breaker.py"}
    assert not (broker / "nats.py").exists()
    assert (project / "tests/test_broker_health.py").exists()
    assert '"redis"' in (project / "tests/test_broker_contract.py").read_text()
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy", "src", "tests"]):
        result = subprocess.run(
            [sys.executable, "-m", *command],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(project / "src")},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
