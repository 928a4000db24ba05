"""``wsforge review [PATH]``: audit a wsforge.yaml, a generated project or an answers file."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ..config import load_config
from ..errors import ReviewFailed
from ..memory import MemoryEntry, YamlMemoryStore, atomic_write_text
from ..review import ReviewReport, Rule, Severity, catalogue, review_spec
from ..review.formats import print_table, to_json, to_markdown, to_sarif
from ..review.load import load_target
from ._app import app, stderr, stdout


class OutputFormat(StrEnum):
    TABLE = "table"
    MARKDOWN = "markdown"
    JSON = "json"
    SARIF = "sarif"


class FailOn(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"
    NEVER = "never"


def emit(
    report: ReviewReport, fmt: OutputFormat, output: Path | None, sarif_rules: Sequence[Rule] | None = None
) -> None:
    """Print ``report`` in ``fmt`` to stdout, or write it to ``output``."""
    if fmt == OutputFormat.TABLE and output is None:
        print_table(report, stdout)
        return
    if fmt == OutputFormat.JSON:
        text = to_json(report)
    elif fmt == OutputFormat.SARIF:
        text = to_sarif(report, sarif_rules)
    else:
        text = to_markdown(report)
    if output is not None:
        atomic_write_text(output, text)
        stderr.print(f"wrote {output}", highlight=False)
    else:
        stdout.out(text, end="", highlight=False)


def check_fail(report: ReviewReport, fail_on: FailOn) -> None:
    """Raise :class:`ReviewFailed` (exit 3) when a finding reaches ``fail_on``."""
    if fail_on == FailOn.NEVER:
        return
    level = Severity(fail_on.value)
    failing = [f for f in report.findings if f.severity.at_least(level)]
    if failing:
        raise ReviewFailed(
            f"{report.kind} failed: {len(failing)} finding(s) at or above {level.value}", len(failing)
        )


def check_fail_after_write(
    report: ReviewReport | None, fail_on: FailOn, target: Path, documents: Sequence[Path], *, dry_run: bool
) -> None:
    """``wsforge new``'s ending: exit 3 as ``review`` would, saying what *was* written first.

    The project, documents and memory stay on disk (a user fixes the answers or the spec and
    regenerates); the message says so, so exit 3 does not read as "nothing happened".
    """
    if report is None or fail_on == FailOn.NEVER:
        return
    level = Severity(fail_on.value)
    failing = [f for f in report.findings if f.severity.at_least(level)]
    if not failing:
        return
    ids = ", ".join(sorted({f.rule_id for f in failing}))
    review_doc = next((str(d) for d in documents if d.name.startswith("websocket_review_")), None)
    written = (
        "dry run: nothing was written"
        if dry_run
        else f"the project was written to {target}" + (f"; details in {review_doc}" if review_doc else "")
    )
    raise ReviewFailed(
        f"step 5 review found {len(failing)} finding(s) at or above {level.value} ({ids}); {written}",
        len(failing),
    )


class SummaryFormat(StrEnum):
    """``--format`` of ``new`` and ``regenerate``: narration on stderr, the summary on stdout."""

    TEXT = "text"
    JSON = "json"


@app.command("review")
def review(
    path: Annotated[
        Path, typer.Argument(help="wsforge.yaml, a generated project directory, or an answers file.")
    ] = Path("."),
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output on stdout.")
    ] = OutputFormat.TABLE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the output here instead.")
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 3 when a finding is at least this severe.")
    ] = FailOn.ERROR,
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="Also write `claudedocs/websocket_review_<project>.md` (the step-5 document).",
        ),
    ] = True,
    use_memory: Annotated[
        bool, typer.Option("--memory/--no-memory", help="Check the project's known issues from memory.")
    ] = True,
) -> None:
    """Audit a config against the step-5 criteria: resilience, integrity, security, scale, memory.

    Every finding has a stable rule id (docs/review-rules.md), the offending key with file and
    line, why it matters and the fix. Exit 0 when clean, 3 when findings reach --fail-on.
    """
    config = load_config(Path.cwd())
    store = YamlMemoryStore(config.memory_dir)

    def memory_for(project: str) -> MemoryEntry | None:
        return store.get_skill_memory(config.skill, project) if use_memory else None

    target = load_target(path, memory_for)
    known: list[str] = []
    contract = None
    if use_memory:
        entry = memory_for(target.spec.project)
        if entry is not None:
            known = [f"{issue.id}: {issue.summary}" for issue in entry.known_issues]
            contract = entry.message_schema
    result = review_spec(
        target.spec,
        spec_path=target.spec_path,
        spec_lines=target.spec_lines,
        project_dir=target.project_dir,
        known_issues=known,
        contract=contract,
    )
    if report:
        doc = config.claudedocs_dir / f"websocket_review_{target.spec.project}.md"
        atomic_write_text(doc, to_markdown(result))
        stderr.print(f"review document: {doc}", highlight=False)
    emit(result, fmt, output, catalogue())
    check_fail(result, fail_on)
