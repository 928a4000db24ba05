"""`wsforge memory show|path|validate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsforge.cli import main
from wsforge.memory import SKILL


def test_path_and_show_for_greenfield(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A project without memory is reported as greenfield."""
    assert main(["memory", "path", "demo"]) == 0
    assert str(workdir / "memory" / SKILL / "demo.yaml") in capsys.readouterr().out.replace("\n", "")
    assert main(["memory", "show", "demo"]) == 0
    assert "greenfield" in capsys.readouterr().out


def test_validate_reports_line_and_field(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate names file, line and field, exit 1."""
    path = workdir / "memory" / SKILL / "demo.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("project: demo\nskill: websocket-engineer\nconventions:\n  heartbeat_interval_s: 0\n")
    assert main(["memory", "validate", "demo"]) == 1
    assert ":4: conventions.heartbeat_interval_s" in capsys.readouterr().err.replace("\n", "")
    path.write_text("project: demo\nskill: websocket-engineer\nconventions:\n  heartbeat_interval_s: 20\n")
    assert main(["memory", "validate", "demo"]) == 0
    assert "valid (1 convention(s)" in capsys.readouterr().out
    assert main(["memory", "show", "demo"]) == 0
    assert "heartbeat_interval_s: 20" in capsys.readouterr().out
