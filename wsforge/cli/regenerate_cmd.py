"""``wsforge regenerate [PATH]``: apply memory and spec edits to a project you have changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..config import AgentConfig, load_config
from ..context import ContextProvider, PackagedContextProvider
from ..memory import MemoryStore, YamlMemoryStore
from ..record import RunResult
from ..requirements import Requirements
from ..update.merge import Action, ConflictStyle, FilePlan, unified_diff
from ..update.run import run_regenerate
from ._app import EXIT_CONFLICTS, app, stderr, stdout, styled
from .review_cmd import FailOn, SummaryFormat, check_fail_after_write


def _diff(plan: FilePlan) -> str:
    """What the run does to the working file (or, for a ``.rej``, the patch it writes)."""
    text = ""
    if plan.write is not None or plan.action == Action.DELETE:
        text += unified_diff(plan.working, plan.write, plan.path)
    if plan.extra is not None:
        text += unified_diff(None, plan.extra[1], plan.extra[0])
    return text


def report(result: RunResult, *, dry_run: bool, show_diff: bool, output_format: str) -> None:
    """Print the plan (and diffs); raise ``typer.Exit(4)`` when conflicts remain."""
    root = result.target
    conflicts = [p.path for p in result.conflicts]
    if output_format == "json":
        summary = {
            "project": result.spec.project,
            "target": str(root),
            "dry_run": dry_run,
            "wrote": result.wrote,
            "plan": [{"path": p.path, "action": p.action.value, "reason": p.reason} for p in result.plans],
            "changes": [str(c) for c in result.changes],
            "conflicts": conflicts,
            "checklist": [r.as_memory() for r in result.checklist],
        }
        stdout.print_json(json.dumps(summary))
    else:
        for record in result.checklist:
            stderr.print(styled(f"step {record.step}", "green", f" {record.name}: {record.detail}"))
        head = (
            "dry run: nothing written. Plan for"
            if dry_run
            else ("regenerated" if result.wrote else "up to date:")
        )
        stdout.print(f"{head} {root}", highlight=False)
        for change in result.changes:
            stdout.print(f"  change    {change}", highlight=False, markup=False)
        for plan in result.plans:
            if plan.action != Action.UNCHANGED:
                stdout.print(
                    f"  {plan.action.value:9} {plan.path}  ({plan.reason})", highlight=False, markup=False
                )
        if show_diff:
            for plan in result.plans:
                text = _diff(plan)
                if text:
                    stdout.out(text, end="", highlight=False)
        for doc in result.documents:
            stdout.print(f"  doc       {doc}", highlight=False)
    if conflicts:
        verb = "would remain" if dry_run else "remain"
        stderr.print(
            styled(
                f"{len(conflicts)} conflict(s) {verb}:",
                "red",
                f" {', '.join(conflicts)}. "
                "Resolve the <<<<<<< yours / >>>>>>> wsforge markers (or apply the .rej patches), "
                "then run `wsforge regenerate` again.",
            )
        )
        raise typer.Exit(EXIT_CONFLICTS)


def merge_existing(
    target: Path,
    requirements: Requirements,
    source: str,
    *,
    store: MemoryStore,
    context: ContextProvider,
    config: AgentConfig,
    dry_run: bool,
    output_format: str,
    fail_on: FailOn = FailOn.ERROR,
) -> None:
    """``wsforge new`` over an existing project: the same merge, with the answers just gathered.

    Exits 4 when conflicts remain, else 3 when step 5's review reaches ``fail_on`` (as ``new``).
    """
    result = run_regenerate(
        target,
        store=store,
        context=context,
        config=config,
        dry_run=dry_run,
        requirements=requirements,
        requirements_source=source,
    )
    report(result, dry_run=dry_run, show_diff=dry_run, output_format=output_format)
    check_fail_after_write(result.review, fail_on, target, result.documents, dry_run=dry_run)


@app.command("regenerate")
def regenerate(
    path: Annotated[
        Path, typer.Argument(help="The generated project (default: the current directory).")
    ] = Path(),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and a unified diff; write nothing.")
    ] = False,
    conflict: Annotated[
        ConflictStyle,
        typer.Option(
            "--conflict",
            help="inline: conflict markers in the file; rej: keep your file, write `<file>.rej`.",
        ),
    ] = ConflictStyle.INLINE,
    show_diff: Annotated[
        bool | None,
        typer.Option("--diff/--no-diff", help="Print unified diffs (default: on with --dry-run)."),
    ] = None,
    output_format: Annotated[
        SummaryFormat, typer.Option("--format", help="Summary on stdout: text, or json for machines.")
    ] = SummaryFormat.TEXT,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            help="Exit 3 when step 5's review has a finding this severe (the merge is still written).",
        ),
    ] = FailOn.ERROR,
) -> None:
    """Re-run steps 1-5 with the current memory and wsforge.yaml; merge into your edited project.

    Files you did not touch are updated, files only you changed are kept, files both changed are
    merged line by line (git merge-file), overlaps are written as conflicts and listed (exit 4).
    Files no longer generated are removed only if unmodified. A hand edit of wsforge.yaml wins
    over memory conventions; delete the line to hand the field back to wsforge. Exit 3 when step
    5's review reaches --fail-on (after writing, as `wsforge new`).
    """
    config = load_config(Path.cwd())
    store = YamlMemoryStore(config.memory_dir)
    result = run_regenerate(
        path,
        store=store,
        context=PackagedContextProvider(),
        config=config,
        dry_run=dry_run,
        conflict=conflict,
    )
    report(
        result,
        dry_run=dry_run,
        show_diff=dry_run if show_diff is None else show_diff,
        output_format=output_format,
    )
    check_fail_after_write(result.review, fail_on, path.resolve(), result.documents, dry_run=dry_run)
