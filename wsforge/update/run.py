"""``wsforge regenerate``: the same pipeline as ``wsforge new``, ended by a three-way merge.

:class:`MergeWriter` is the :class:`~wsforge.workflow.Writer` for a project that exists. Order
matters for "nothing is touched on a bad input": the project's ``.wsforge/`` and ``wsforge.yaml``
are read before step 1, memory is read and validated in step 3, the new design is validated with
your hand edits laid over it in step 2, and every file is rendered and merged *in memory* before
the first write. Only then does :func:`~wsforge.update.project.apply_plan` write, and only if
something differs (so a regenerate with nothing new is a no-op that leaves every mtime alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._yaml import validate
from ..architecture import convention_decisions
from ..config import AgentConfig
from ..context import ContextProvider
from ..errors import SpecError, UserError
from ..memory import MemoryEntry, MemoryStore
from ..record import Run, RunResult, need
from ..render import SPEC_FILE, manifest
from ..requirements import Requirements
from ..spec import ArchitectureSpec, dump_spec
from ..workflow import DryRunWriter, Pipeline, Writer
from .merge import Action, ConflictStyle, FilePlan, MergeFn, git_merge_file, plan_merge
from .project import ProjectState, apply_plan, needs_writing, plan_spec_file, read_state, read_working, sha256
from .spec_edits import diff, explain, overlay


def _requirements(state: ProjectState) -> Requirements:
    lines = {k[1:]: v for k, v in state.spec_lines.items() if k[:1] == ("requirements",)}
    data = state.spec_data.get("requirements")
    return validate(
        Requirements, data, str(state.spec_path), lines, SpecError, prefix="requirements: ", suggest=False
    )


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
    return validate(
        ArchitectureSpec,
        data,
        str(state.spec_path),
        state.spec_lines,
        SpecError,
        note=" (after laying your wsforge.yaml edits over the new design)",
        suggest=False,
    )


def _counts_text(run: Run) -> str:
    return ", ".join(f"{n} {a}" for a, n in sorted(run.counts.items()))


@dataclass
class MergeWriter(Writer):
    """Merges the new render into an existing project three ways, as ``copier update`` does."""

    state: ProjectState
    requirements_source: str = SPEC_FILE
    conflict: ConflictStyle = ConflictStyle.INLINE
    merge: MergeFn = git_merge_file
    event: str = "regenerated"
    _manifest: dict[str, Any] = field(default_factory=dict, init=False)
    _blobs: dict[str, bytes] = field(default_factory=dict, init=False)

    @property
    def last_spec(self) -> dict[str, Any]:
        """The spec of the last render (its pristine ``wsforge.yaml``, else the last design)."""
        state = self.state
        loaded = yaml.safe_load(state.base[SPEC_FILE]) if SPEC_FILE in state.base else dict(state.design_base)
        return loaded if isinstance(loaded, dict) else {}

    def shape(self, run: Run) -> str:
        """Refuse a missing memory the last render used; keep your hand edits of ``wsforge.yaml``."""
        state, last = self.state, self.last_spec
        _memory_guard(need(run.memory, "memory"), last)
        designed = need(run.designed, "the design")
        data, run.overrides = overlay(
            designed.model_dump(mode="json"), diff(state.design_base, state.spec_data), state.spec_data
        )
        spec = run.spec = _validate(data, state)
        run.changes = explain(
            last,
            spec.model_dump(mode="json"),
            run.overrides,
            convention_decisions(),
            requirements_source=self.requirements_source,
        )
        parts = []
        if run.overrides:
            parts.append(
                f"{len(run.overrides)} hand edit(s) of wsforge.yaml kept: "
                + ", ".join(e.dotted for e in run.overrides)
            )
        parts.append("changes: " + ("; ".join(map(str, run.changes)) if run.changes else "none"))
        return "; ".join(parts)

    def plan(self, run: Run) -> None:
        state, files, spec = self.state, run.files, need(run.spec, "the spec")
        read_working(state, files)
        plans = [plan_spec_file(state, files[SPEC_FILE], spec.model_dump(mode="json"), self.merge)]
        plans += plan_merge(
            {p: c for p, c in state.base.items() if p != SPEC_FILE},
            {p: c for p, c in files.items() if p != SPEC_FILE},
            {p: c for p, c in state.working.items() if p != SPEC_FILE},
            style=self.conflict,
            merge=self.merge,
            unresolved=state.unresolved,
        )
        run.plans = [
            FilePlan(
                p.path,
                p.action,
                "the last render's pristine copy is missing and you changed it; " + p.reason.split("; ")[-1],
                p.base,
                p.new,
                p.working,
                p.write,
                p.extra,
            )
            if p.path in state.missing_base and p.action == Action.CONFLICT
            else p
            for p in sorted(plans, key=lambda p: p.path)
        ]
        data = manifest(files, spec)
        blobs = {sha256(c): c for c in files.values()}
        designed_text = dump_spec(need(run.designed, "the design")).encode()
        if designed_text != files[SPEC_FILE]:
            data["design"] = sha256(designed_text)
            blobs[data["design"]] = designed_text
        if run.conflicts:
            data["conflicts"] = [p.path for p in run.conflicts]
        self._manifest, self._blobs = data, blobs

    def apply(self, run: Run) -> None:
        if needs_writing(self.state, run.plans, self._manifest, self._blobs):
            apply_plan(self.state, run.plans, self._manifest, self._blobs)
            run.wrote = True

    def code_ready(self, run: Run) -> bool:
        return True  # the project is there, written now or already up to date

    def describe(self, run: Run) -> str:
        verb = "planned" if run.dry_run else ("merged into" if run.wrote else "nothing to write in")
        text = f"{verb} {self.state.root}: {_counts_text(run)}"
        conflicts = [p.path for p in run.conflicts]
        return text + (f"; conflicts: {', '.join(conflicts)}" if conflicts else "")

    def history(self, run: Run) -> list[str]:
        conflicts = [p.path for p in run.conflicts]
        files_line = "files: " + _counts_text(run)
        return [
            *map(str, run.changes),
            files_line + (f"; conflicts: {', '.join(conflicts)}" if conflicts else ""),
        ]


def run_regenerate(
    target: Path,
    *,
    store: MemoryStore,
    context: ContextProvider,
    config: AgentConfig,
    dry_run: bool = False,
    conflict: ConflictStyle = ConflictStyle.INLINE,
    requirements: Requirements | None = None,
    requirements_source: str = SPEC_FILE,
    merge: MergeFn = git_merge_file,
) -> RunResult:
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
    merger = MergeWriter(state, requirements_source, conflict, merge)
    pipeline = Pipeline(
        answers=lambda _run: requirements or _requirements(state),
        answers_detail=f"requirements from {requirements_source}",
        store=store,
        context=context,
        config=config,
        writer=DryRunWriter(merger) if dry_run else merger,
    )
    return pipeline(Run(None, None, None, {}, root, dry_run=dry_run))
