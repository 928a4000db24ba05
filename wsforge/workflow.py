"""The five steps, in order, with a compliance checklist.

Each step takes the previous step's output, so the order cannot be skipped or swapped:
requirements (1) -> architecture (2) -> memory (3) -> implement (4) -> review (5).
Every step appends a :class:`StepRecord` to the checklist, which step 5 stores in memory and prints
in the review document. Nothing here prompts or prints: the CLI does that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .architecture import design
from .config import AgentConfig
from .context import PackagedContextProvider
from .errors import WsforgeError
from .memory import MemoryEntry, MemoryStore, now_iso
from .render import SPEC_FILE, plan_files, render_project, write_project
from .reports import write_reports
from .requirements import Requirements
from .review import ReviewReport, review_spec
from .spec import ArchitectureSpec

STEP_NAMES = {1: "requirements", 2: "architecture", 3: "memory", 4: "implement", 5: "review"}


@dataclass
class StepRecord:
    step: int
    name: str
    at: str
    result: str
    detail: str
    seconds: float = 0.0

    def as_memory(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "name": self.name,
            "at": self.at,
            "result": self.result,
            "detail": self.detail,
        }


@dataclass
class RunResult:
    requirements: Requirements
    spec: ArchitectureSpec
    memory: MemoryEntry
    files: dict[str, bytes]
    target: Path
    checklist: list[StepRecord]
    documents: list[Path] = field(default_factory=list)
    review: Any = None
    dry_run: bool = False


class Checklist:
    """Records each step as it runs; a step that raises is recorded as failed."""

    def __init__(self) -> None:
        self.records: list[StepRecord] = []

    def run(self, step: int, fn: Callable[[], Any], detail: Callable[[Any], str]) -> Any:
        if self.records and self.records[-1].step != step - 1:
            raise WsforgeError(f"step {step} cannot run before step {step - 1}")  # pragma: no cover - guard
        start = time.monotonic()
        try:
            value = fn()
        except BaseException as exc:
            self.records.append(
                StepRecord(step, STEP_NAMES[step], now_iso(), "failed", str(exc), time.monotonic() - start)
            )
            raise
        self.records.append(
            StepRecord(step, STEP_NAMES[step], now_iso(), "ok", detail(value), time.monotonic() - start)
        )
        return value


def run_new(
    requirements: Requirements,
    *,
    store: MemoryStore,
    config: AgentConfig,
    target: Path,
    force: bool = False,
    dry_run: bool = False,
    requirements_detail: str = "answers validated",
) -> RunResult:
    """Steps 1-5 for a new (or re-generated with ``--force``) project."""
    checklist = Checklist()
    project = requirements.project_name
    checklist.run(1, lambda: requirements, lambda _r: requirements_detail)
    knowledge = PackagedContextProvider().get_index("websocket")

    table_spec = checklist.run(
        2,
        lambda: design(requirements, None, knowledge),
        lambda s: (
            f"{len(s.decisions)} decisions; {s.scaling.strategy.value}, {s.scaling.instances} instance(s)"
        ),
    )

    def step3() -> tuple[MemoryEntry, ArchitectureSpec]:
        memory = store.get_skill_memory(config.skill, project)
        if memory.greenfield:
            return memory, table_spec
        return memory, design(requirements, memory, knowledge)

    def step3_detail(value: tuple[MemoryEntry, ArchitectureSpec]) -> str:
        memory, spec = value
        if memory.greenfield:
            return "greenfield: no memory for this project yet"
        overridden = [d.key for d in spec.decisions if d.source.value == "memory"]
        return (
            f"loaded {memory.path}; {len(overridden)} convention(s) applied"
            + (f" ({', '.join(overridden)})" if overridden else "")
            + f"; {len(memory.known_issues)} known issue(s)"
        )

    memory, spec = checklist.run(3, step3, step3_detail)

    def step4() -> dict[str, bytes]:
        files = render_project(spec)
        if not dry_run:
            write_project(files, target, spec, force=force)
        return files

    files = checklist.run(
        4, step4, lambda f: f"{'planned' if dry_run else 'wrote'} {len(f)} files into {target}"
    )
    result = RunResult(requirements, spec, memory, files, target, checklist.records, dry_run=dry_run)

    def step5() -> ReviewReport:
        report = review_step(spec, memory, target, code=not dry_run)
        result.review = report
        return report

    checklist.run(5, step5, findings_summary)
    if not dry_run:
        result.documents = write_reports(result, config)
        _remember(result, store, config)
    return result


def review_step(spec: ArchitectureSpec, memory: MemoryEntry, target: Path, *, code: bool) -> ReviewReport:
    """Step 5's audit: the spec always, the generated code too when ``code`` (it exists and parses)."""
    return review_spec(
        spec,
        spec_path=target / SPEC_FILE,
        project_dir=target if code else None,
        known_issues=[f"{k.id}: {k.summary}" for k in memory.known_issues],
    )


def findings_summary(report: ReviewReport) -> str:
    """``findings: 1 warning, 2 note`` for the checklist."""
    counts = {severity: n for severity, n in report.counts().items() if n}
    return "findings: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none")


def _remember(
    result: RunResult,
    store: MemoryStore,
    config: AgentConfig,
    *,
    event: str = "generated",
    changes: list[str] | None = None,
) -> None:
    """Update memory after a successful run: decisions, scaling, answers, checklist, history.

    ``changes`` (regenerate: what changed and why) replaces the default list of memory overrides.
    """
    spec = result.spec
    project = spec.project
    store.update(
        config.skill,
        project,
        {
            "decisions": [d.model_dump(mode="json", exclude={"alternatives"}) for d in spec.decisions],
            "scaling": {
                "strategy": spec.scaling.strategy.value,
                "instances": spec.scaling.instances,
                "broker_url": spec.scaling.broker_url,
                "transport": spec.transport.value,
            },
            "answers": result.requirements.model_dump(mode="json"),
        },
    )
    for record in result.checklist:
        store.append(config.skill, project, record.as_memory(), section="compliance")
    store.append(
        config.skill,
        project,
        {
            "at": now_iso(),
            "event": event,
            "wsforge_version": __version__,
            "changes": changes
            if changes is not None
            else [f"{d.key} <- memory" for d in spec.decisions if d.source.value == "memory"],
        },
        section="history",
    )


def run_regenerate(target: Path, **kwargs: Any) -> Any:
    """Steps 1-5 over an existing project, merged three ways: see :mod:`wsforge.update.run`."""
    from .update.run import run_regenerate as _run

    return _run(target, **kwargs)


def plan_summary(spec: ArchitectureSpec, target: Path) -> list[tuple[str, str]]:
    """``(action, path)`` rows for ``--dry-run``: create, overwrite or keep."""
    rows = []
    for planned in plan_files(spec):
        dest = target / planned.path
        rows.append(("overwrite" if dest.exists() else "create", planned.path))
    return rows
