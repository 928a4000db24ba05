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
from .contract import breaking_changes, message_contract, versioning_strategy
from .errors import WsforgeError
from .memory import KnownIssue, MemoryEntry, MemoryStore, now_iso
from .render import SPEC_FILE, plan_files, render_project, write_project
from .reports import write_reports
from .requirements import Requirements
from .review import Finding, ReviewReport, Severity, review_spec
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
            + contract_warning(memory, spec)
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


def contract_warning(memory: MemoryEntry, spec: ArchitectureSpec) -> str:
    """Step 3's warning when this design changes the wire contract memory recorded (else "")."""
    broken = breaking_changes(memory.message_schema, message_contract(spec))
    if not broken:
        return ""
    return "; WARNING: breaks deployed clients: " + "; ".join(text for _, text in broken)


def review_step(spec: ArchitectureSpec, memory: MemoryEntry, target: Path, *, code: bool) -> ReviewReport:
    """Step 5's audit: the spec always, the generated code too when ``code`` (it exists and parses)."""
    return review_spec(
        spec,
        spec_path=target / SPEC_FILE,
        project_dir=target if code else None,
        known_issues=[f"{k.id}: {k.summary}" for k in memory.known_issues],
        contract=memory.message_schema,
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
    """Update memory after a successful run (step 5).

    Writes the decisions, scaling, answers, the wire contract (``message_schema``) and the
    ``versioning`` strategy; replaces ``compliance`` with this run's checklist (older runs keep a
    one-entry summary in ``history``, itself bounded); and syncs ``known_issues``: an unresolved
    error-level review finding is recorded (``source: review``), one that now passes is removed,
    and entries a person wrote are left alone. ``changes`` (regenerate: what changed and why)
    replaces the default list of memory overrides.
    """
    spec = result.spec
    project = spec.project
    contract = message_contract(spec, _text(result.files.get("asyncapi.yaml")))
    broken = [text for _, text in breaking_changes(result.memory.message_schema, contract)]
    issues, opened, closed = _sync_known_issues(result.memory.known_issues, result.review)
    store.update(
        config.skill,
        project,
        {
            "known_issues": issues,
            "decisions": [d.model_dump(mode="json", exclude={"alternatives"}) for d in spec.decisions],
            "scaling": {
                "strategy": spec.scaling.strategy.value,
                "instances": spec.scaling.instances,
                "broker_url": spec.scaling.broker_url,
                "transport": spec.transport.value,
            },
            "answers": result.requirements.model_dump(mode="json"),
            "message_schema": contract,
            "versioning": versioning_strategy(spec),
            "compliance": [record.as_memory() for record in result.checklist],
        },
    )
    logged = (
        changes
        if changes is not None
        else [f"{d.key} <- memory" for d in spec.decisions if d.source.value == "memory"]
    )
    logged = [
        *logged,
        *(f"breaks deployed clients: {text}" for text in broken),
        *(f"known issue recorded: {issue_id}" for issue_id in opened),
        *(f"known issue resolved: {issue_id}" for issue_id in closed),
    ]
    store.append(
        config.skill,
        project,
        {
            "at": now_iso(),
            "event": event,
            "wsforge_version": __version__,
            "changes": logged,
            "review": findings_summary(result.review) if result.review is not None else None,
        },
        section="history",
    )


def _text(data: bytes | None) -> str | None:
    return data.decode("utf-8") if data is not None else None


def _sync_known_issues(
    current: list[KnownIssue], report: ReviewReport | None
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Known issues after this review: ``(entries, ids recorded now, ids resolved now)``.

    One ``source: review`` entry per rule with an error finding (its ``since`` kept while it stays
    open); a person's entries are kept exactly as written (only the keys they wrote).
    """
    failing: dict[str, list[Finding]] = {}
    for finding in report.findings if report is not None else []:
        if finding.severity == Severity.ERROR:
            failing.setdefault(finding.rule_id, []).append(finding)
    previous = {issue.id: issue for issue in current if issue.source == "review"}
    entries: list[dict[str, Any]] = [
        issue.model_dump(mode="json", exclude_unset=True) for issue in current if issue.source != "review"
    ]
    for rule_id, found in sorted(failing.items()):
        first = found[0]
        where = ", ".join(dict.fromkeys(f.key for f in found))
        entries.append(
            {
                "id": rule_id,
                "summary": f"{first.title} ({where}: {first.evidence})",
                "severity": "error",
                "since": previous[rule_id].since if rule_id in previous else now_iso()[:10],
                "source": "review",
            }
        )
    opened = sorted(set(failing) - set(previous))
    closed = sorted(set(previous) - set(failing))
    return entries, opened, closed


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
