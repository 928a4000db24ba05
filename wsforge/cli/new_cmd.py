"""``wsforge new``: steps 1-5."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import load_config
from ..context import PackagedContextProvider
from ..errors import InteractiveSessionRequired, MemoryStoreError, RequirementsError
from ..memory import YamlMemoryStore
from ..render import MANIFEST
from ..requirements import QUESTION_KEYS, Requirements, build_requirements, check_known_keys, read_answers
from ..workflow import plan_summary, run_new
from ._app import app, stderr, stdout, styled
from .review_cmd import FailOn, SummaryFormat, check_fail_after_write

REQUIRED_KEYS = tuple(k for k, f in Requirements.model_fields.items() if f.is_required())


def gather_answers(
    name: str | None,
    answers_file: Path | None,
    *,
    interactive: bool,
    memory_answers: dict[str, Any],
) -> tuple[dict[str, Any], dict[tuple[str, ...], int] | None, str]:
    """Layer the answers: wizard > answers file (> NAME argument) > memory > defaults."""
    merged: dict[str, Any] = dict(memory_answers)
    lines = None
    source = "<answers>"
    if answers_file is not None:
        data, lines = read_answers(answers_file)
        check_known_keys(data, str(answers_file), lines)
        merged.update(data)
        source = str(answers_file)
    if name:
        merged["project_name"] = name
    if interactive:
        from ..wizard import ask_requirements

        merged = ask_requirements(merged)
        return merged, None, "<wizard>"
    missing = [key for key in REQUIRED_KEYS if key not in merged]
    if missing:
        raise RequirementsError(
            f"{source}: missing answer(s): {', '.join(missing)} "
            f"(every question is a key of the answers file; known keys: {', '.join(QUESTION_KEYS)})"
        )
    return merged, lines, source


@app.command("new")
def new(
    name: Annotated[
        str | None, typer.Argument(help="Project name (overrides project_name in the answers).")
    ] = None,
    answers: Annotated[
        Path | None, typer.Option("--answers", "-a", help="YAML/JSON file with an answer for every question.")
    ] = None,
    non_interactive: Annotated[
        bool, typer.Option("--non-interactive", help="Never prompt; a missing answer is an error.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Project directory (default: `./<project_name>`).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into an existing, non-empty directory.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Run every step, print the file plan, write nothing.")
    ] = False,
    output_format: Annotated[
        SummaryFormat, typer.Option("--format", help="Summary on stdout: text, or json for machines.")
    ] = SummaryFormat.TEXT,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            help="Exit 3 when step 5's review has a finding this severe (the project is still written).",
        ),
    ] = FailOn.ERROR,
) -> None:
    """Capture requirements, design the architecture, render the project, review it, write the docs."""
    cwd = Path.cwd()
    config = load_config(cwd)
    store = YamlMemoryStore(config.memory_dir)
    context = PackagedContextProvider()
    interactive = not non_interactive and answers is None and sys.stdin.isatty()
    if not non_interactive and answers is None and not sys.stdin.isatty():
        raise InteractiveSessionRequired(
            "no terminal to ask on: use --answers FILE (and --non-interactive) to run without prompts"
        )
    memory_answers: dict[str, Any] = {}
    project_hint = name
    if project_hint is None and answers is not None:
        data, _ = read_answers(answers)
        project_hint = data.get("project_name") if isinstance(data.get("project_name"), str) else None
    if project_hint:
        try:
            memory_answers = dict(store.get_skill_memory(config.skill, project_hint).answers)
        except MemoryStoreError:
            memory_answers = {}  # step 3 reports the broken file, with its line, before anything is written
    merged, lines, source = gather_answers(
        name, answers, interactive=interactive, memory_answers=memory_answers
    )
    requirements = build_requirements(merged, source=source, lines=lines)
    target = (output or cwd / requirements.project_name).resolve()
    if not force and (target / MANIFEST).is_file():
        # An existing wsforge project: merge three ways like `wsforge regenerate` (--force overwrites).
        from .regenerate_cmd import merge_existing

        merge_existing(
            target,
            requirements,
            source,
            store=store,
            context=context,
            config=config,
            dry_run=dry_run,
            output_format=output_format,
            fail_on=fail_on,
        )
        return
    result = run_new(
        requirements,
        store=store,
        context=context,
        config=config,
        target=target,
        force=force,
        dry_run=dry_run,
        requirements_detail=f"answers from {source}",
    )
    spec = result.spec
    if output_format == "json":
        summary = {
            "project": spec.project,
            "target": str(target),
            "dry_run": dry_run,
            "files": sorted(result.files),
            "documents": [str(p) for p in result.documents],
            "checklist": [r.as_memory() for r in result.checklist],
        }
        stdout.print_json(json.dumps(summary))
        check_fail_after_write(result.review, fail_on, target, result.documents, dry_run=dry_run)
        return
    for record in result.checklist:
        stderr.print(styled(f"step {record.step}", "green", f" {record.name}: {record.detail}"))
    if dry_run:
        stdout.print(f"dry run: nothing written. Plan for {target}:", highlight=False)
        for action, path in plan_summary(spec, target):
            stdout.print(f"  {action:9} {path}", highlight=False)
        check_fail_after_write(result.review, fail_on, target, result.documents, dry_run=dry_run)
        return
    stdout.print(f"created {target}", highlight=False)
    for doc in result.documents:
        stdout.print(f"  doc  {doc}", highlight=False)
    stdout.print(f"next: see {target / 'README.md'}", highlight=False)
    check_fail_after_write(result.review, fail_on, target, result.documents, dry_run=dry_run)
