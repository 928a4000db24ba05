"""User- and spec-derived values print literally: rich never reads their brackets as markup."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsforge.cli import main


def test_output_dir_with_markup_closing_tag_is_written_and_printed(
    workdir: Path, chat_answers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o 'out[/x]'` used to raise MarkupError after writing; now it exits 0 and names the directory."""
    assert main(["new", "--answers", str(chat_answers), "--non-interactive", "-o", "out[/x]"]) == 0
    out, err = capsys.readouterr()
    assert (workdir / "out[/x]" / "wsforge.yaml").is_file()
    assert f"created {workdir / 'out[/x]'}" in out
    assert err.splitlines()[3].endswith(f"into {workdir / 'out[/x]'}"), err


def test_bracketed_values_in_step_lines_are_kept(
    workdir: Path, chat_answers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value that looks like a style tag (`[bold]`) is shown as typed, not swallowed."""
    assert main(["new", "--answers", str(chat_answers), "--non-interactive", "-o", "out[bold]"]) == 0
    out, err = capsys.readouterr()
    assert "out[bold]" in out
    step4 = next(line for line in err.splitlines() if line.startswith("step 4"))
    assert step4.endswith("out[bold]"), step4


def test_error_line_keeps_brackets_in_file_names(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The one-line error names the file exactly, brackets included."""
    (workdir / "a[red].yaml").write_text("project_name: [\n")
    assert main(["new", "--answers", "a[red].yaml", "--non-interactive"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: a[red].yaml:"), err
