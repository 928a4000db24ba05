"""``wsforge regenerate``: steps 1-5 again over an existing project, applied as a three-way merge.

Order matters for "nothing is touched on a bad input": the project's ``.wsforge/`` and
``wsforge.yaml`` are read, memory is read and validated, the new spec is designed and
validated and every file is rendered and merged *in memory* before the first write. Only then
does :func:`~wsforge.update.project.apply_plan` write, and only if something differs (so a
regenerate with nothing new is a no-op that leaves every mtime alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..architecture import design
from ..config import AgentConfig
from ..context import PackagedContextProvider
from ..errors import SpecError, UserError
from ..memory import MemoryEntry, MemoryStore
from ..render import SPEC_FILE, manifest, render_project
from ..reports import write_reports
from ..requirements import Requirements, format_validation_error
from ..review import ReviewReport
from ..spec import ArchitectureSpec, dump_spec
from ..workflow import Checklist, RunResult, _remember, contract_warning, findings_summary, review_step
from .merge import Action, ConflictStyle, FilePlan, MergeFn, git_merge_file, plan_merge
from .project import ProjectState, apply_plan, needs_writing, plan_spec_file, read_state, read_working, sha256
from .spec_edits import Change, Edit, diff, explain, overlay


@dataclass
class RegenerateResult:
    run: RunResult
    plans: list[FilePlan]
    changes: list[Change]
    overrides: list[Edit]
    wrote: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def conflicts(self) -> list[FilePlan]:
        return [p for p in self.plans if p.action == Action.CONFLICT]


def _convention_keys() -> dict[str, str]:
    from .. import architecture

    keys = getattr(architecture, "_CONVENTION_KEYS", {})
    return dict(keys) if isinstance(keys, dict) else {}


def _requirements(state: ProjectState) -> Requirements:
    lines = {k[1:]: v for k, v in state.spec_lines.items() if k[:1] == ("requirements",)}
    try:
        return Requirements.model_validate(state.spec_data.get("requirements"))
    except ValidationError as exc:
        raise SpecError("requirements: " + format_validation_error(exc, str(state.spec_path), lines)) from exc


def _memory_guard(memory: MemoryEntry, last: dict[str, Any]) -> None:
    """A memory file that went missing would silently undo the team's conventions: refuse."""
    used = [
        d.get("key") for d in last.get("decisions", []) if isinstance(d, dict) and d.get("source") == "memory"
    ]
    if memory.greenfield and used:
        raise UserError(
            f"no memory at {memory.path}, but the last render applied memory conventions ({', '.join(map(str, used))}); "
            "run from the directory that holds memory/ (or set WSFORGE_MEMORY_DIR) so they are not dropped"
        )


def _validate(data: dict[str, Any], state: ProjectState) -> ArchitectureSpec:
    try:
        return ArchitectureSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            format_validation_error(exc, str(state.spec_path), state.spec_lines)
            + " (after laying your wsforge.yaml edits over the new design)"
        ) from exc


def _summary(plans: list[FilePlan]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for plan in plans:
        counts[plan.action.value] = counts.get(plan.action.value, 0) + 1
    return counts


def run_regenerate(
    target: Path,
    *,
    store: MemoryStore,
    config: AgentConfig,
    dry_run: bool = False,
    conflict: ConflictStyle = ConflictStyle.INLINE,
    requirements: Requirements | None = None,
    requirements_source: str = SPEC_FILE,
    merge: MergeFn = git_merge_file,
) -> RegenerateResult:
    """Re-run steps 1-5 for the project at ``target`` and merge the result into it.

    Args:
        requirements: step 1's answers; default: the ``requirements`` in the project's
            ``wsforge.yaml`` (``wsforge new`` over a project passes the answers it gathered).
        conflict: how an overlapping change is written (markers, or a ``.rej`` beside your file).

    Raises:
        UserError: not a wsforge project, memory missing where it was used, a bad memory file
            (:class:`~wsforge.errors.MemoryStoreError`) or ``wsforge.yaml``
            (:class:`~wsforge.errors.SpecError`) -- always before anything is written.
    """
    root = target.resolve()
    state = read_state(root)
    last_spec = yaml.safe_load(state.base[SPEC_FILE]) if SPEC_FILE in state.base else dict(state.design_base)
    checklist = Checklist()

    req = checklist.run(
        1, lambda: requirements or _requirements(state), lambda _r: f"requirements from {requirements_source}"
    )
    knowledge = PackagedContextProvider().get_index("websocket")
    table_spec = checklist.run(
        2,
        lambda: design(req, None, knowledge),
        lambda s: (
            f"{len(s.decisions)} decisions; {s.scaling.strategy.value}, {s.scaling.instances} instance(s)"
        ),
    )

    def step3() -> tuple[MemoryEntry, ArchitectureSpec, ArchitectureSpec, list[Edit], list[Change]]:
        memory = store.get_skill_memory(config.skill, req.project_name)
        _memory_guard(memory, last_spec if isinstance(last_spec, dict) else {})
        designed = table_spec if memory.greenfield else design(req, memory, knowledge)
        edits = diff(state.design_base, state.spec_data)
        data, overrides = overlay(designed.model_dump(mode="json"), edits, state.spec_data)
        spec = _validate(data, state)
        changes = explain(
            last_spec if isinstance(last_spec, dict) else {},
            spec.model_dump(mode="json"),
            overrides,
            _convention_keys(),
            requirements_source=requirements_source,
        )
        return memory, designed, spec, overrides, changes

    def step3_detail(
        value: tuple[MemoryEntry, ArchitectureSpec, ArchitectureSpec, list[Edit], list[Change]],
    ) -> str:
        memory, _designed, spec, overrides, changes = value
        applied = [d.key for d in spec.decisions if d.source.value == "memory"]
        where = "greenfield: no memory" if memory.greenfield else f"loaded {memory.path}"
        parts = [
            f"{where}; {len(applied)} convention(s) applied" + (f" ({', '.join(applied)})" if applied else "")
        ]
        if overrides:
            parts.append(
                f"{len(overrides)} hand edit(s) of wsforge.yaml kept: "
                + ", ".join(e.dotted for e in overrides)
            )
        parts.append("changes: " + ("; ".join(map(str, changes)) if changes else "none"))
        return "; ".join(parts) + contract_warning(memory, spec)

    memory, designed, spec, overrides, changes = checklist.run(3, step3, step3_detail)
    result_box: dict[str, Any] = {}

    def step4() -> list[FilePlan]:
        files = render_project(spec)
        read_working(state, files)
        new_spec_text = files[SPEC_FILE]
        plans = [plan_spec_file(state, new_spec_text, spec.model_dump(mode="json"), merge)]
        plans += plan_merge(
            {p: c for p, c in state.base.items() if p != SPEC_FILE},
            {p: c for p, c in files.items() if p != SPEC_FILE},
            {p: c for p, c in state.working.items() if p != SPEC_FILE},
            style=conflict,
            merge=merge,
            unresolved=state.unresolved,
        )
        plans = [
            FilePlan(
                p.path,
                p.action,
                "the last render's pristine copy is missing and you changed it; " + p.reason.split("; ")[-1],
                *_rest(p),
            )
            if p.path in state.missing_base and p.action == Action.CONFLICT
            else p
            for p in sorted(plans, key=lambda p: p.path)
        ]
        data = manifest(files, spec)
        blobs = {sha256(c): c for c in files.values()}
        designed_text = dump_spec(designed).encode()
        if designed_text != files[SPEC_FILE]:
            data["design"] = sha256(designed_text)
            blobs[data["design"]] = designed_text
        conflicts = [p.path for p in plans if p.action == Action.CONFLICT]
        if conflicts:
            data["conflicts"] = conflicts
        result_box["files"] = files
        if not dry_run and needs_writing(state, plans, data, blobs):
            apply_plan(state, plans, data, blobs)
            result_box["wrote"] = True
        return plans

    def step4_detail(plans: list[FilePlan]) -> str:
        counts = _summary(plans)
        verb = "planned" if dry_run else ("merged into" if result_box.get("wrote") else "nothing to write in")
        text = f"{verb} {root}: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
        conflicts = [p.path for p in plans if p.action == Action.CONFLICT]
        return text + (f"; conflicts: {', '.join(conflicts)}" if conflicts else "")

    plans = checklist.run(4, step4, step4_detail)
    wrote = bool(result_box.get("wrote"))
    run = RunResult(req, spec, memory, result_box["files"], root, checklist.records, dry_run=dry_run)

    def step5() -> ReviewReport:
        # Code with conflict markers does not parse: review the spec alone until it is resolved.
        report = review_step(spec, memory, root, code=not (dry_run or conflicts_now))
        run.review = report
        return report

    def step5_detail(report: ReviewReport) -> str:
        skipped = "; code checks skipped until the conflicts are resolved" if conflicts_now else ""
        return findings_summary(report) + skipped

    conflicts_now = any(p.action == Action.CONFLICT for p in plans)
    checklist.run(5, step5, step5_detail)
    result = RegenerateResult(run, plans, changes, overrides, wrote, _summary(plans))
    if wrote:
        run.documents = write_reports(run, config)
        files_line = "files: " + ", ".join(f"{n} {a}" for a, n in sorted(result.counts.items()))
        conflicts = [p.path for p in result.conflicts]
        _remember(
            run,
            store,
            config,
            event="regenerated",
            changes=[
                *map(str, changes),
                files_line + (f"; conflicts: {', '.join(conflicts)}" if conflicts else ""),
            ],
        )
    return result


def _rest(
    plan: FilePlan,
) -> tuple[bytes | None, bytes | None, bytes | None, bytes | None, tuple[str, bytes] | None]:
    return plan.base, plan.new, plan.working, plan.write, plan.extra
