"""The five steps as one pipeline: a :class:`~wsforge.record.Run` passes through named steps.

``wsforge new``, ``wsforge regenerate`` and ``--dry-run`` are the same run; they differ only in
where step 1's answers come from and in the :class:`Writer` that ends step 4 (write a fresh
project, merge into an existing one, or write nothing). As in copier, whose one ``Worker`` serves
``run_copy`` and ``run_update``.

The steps run in the order their inputs need, which is not the order of their numbers: memory
(3) is read before the design (2), because its conventions shape the design and its known issues
go into the spec, so the design runs once. The checklist keeps the skill's numbers and names and
lists the steps in the order they ran (``1, 3, 2, 4, 5``); each records what it found, and a
step whose input is missing refuses to run. Step 5 stores the checklist in memory and prints it
in the review document. Nothing here prompts or prints: the CLI does that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import __version__
from .architecture import design
from .config import AgentConfig
from .context import KNOWLEDGE_DOMAIN, ContextProvider
from .contract import breaking_changes, message_contract, versioning_strategy
from .errors import WsforgeError
from .memory import KnownIssue, MemoryEntry, MemoryStore, now_iso
from .record import Run, RunResult, StepRecord, need
from .render import SPEC_FILE, plan_files, render_project, write_project
from .reports import write_reports
from .requirements import Requirements
from .review import Finding, ReviewReport, Severity, review_spec
from .spec import ArchitectureSpec

__all__ = [
    "Checklist",
    "DryRunWriter",
    "FreshWriter",
    "Pipeline",
    "Run",
    "RunResult",
    "Step",
    "StepRecord",
    "Writer",
    "findings_summary",
    "plan_summary",
    "remember",
    "run_new",
]

STEP_NAMES = {1: "requirements", 2: "architecture", 3: "memory", 4: "implement", 5: "review"}


class Writer(Protocol):
    """How a run ends: what step 4 does with the rendered files, and what the run leaves behind.

    The hooks with a body are what most writers want; an implementation overrides the rest.
    """

    event: str = "generated"
    """The memory history's name for a run that wrote."""

    def shape(self, run: Run) -> str:
        """End of step 2: lay the project's own edits over the design; return a detail ("" if none)."""
        return ""

    def plan(self, run: Run) -> None:
        """Step 4, in memory: decide what the write will do with ``run.files`` (nothing written)."""
        return None

    def apply(self, run: Run) -> None:
        """Step 4: carry the plan out; set ``run.wrote`` when the filesystem changed."""
        ...

    def describe(self, run: Run) -> str:
        """Step 4's checklist detail."""
        ...

    def code_ready(self, run: Run) -> bool:
        """Whether step 5 can review the generated code (it exists and parses)."""
        return run.wrote

    def history(self, run: Run) -> list[str] | None:
        """The memory history's ``changes`` (``None``: the conventions applied)."""
        return None


@dataclass
class FreshWriter(Writer):
    """Writes a new project (``wsforge new``), or over one file by file with ``force``."""

    force: bool = False

    def apply(self, run: Run) -> None:
        write_project(run.files, run.target, need(run.spec, "the spec"), force=self.force)
        run.wrote = True

    def describe(self, run: Run) -> str:
        return f"{'wrote' if run.wrote else 'planned'} {len(run.files)} files into {run.target}"


@dataclass
class DryRunWriter(Writer):
    """``--dry-run``: everything another writer would plan, in memory; nothing is written."""

    inner: Writer

    def shape(self, run: Run) -> str:
        return self.inner.shape(run)

    def plan(self, run: Run) -> None:
        self.inner.plan(run)

    def apply(self, run: Run) -> None:
        run.wrote = False

    def describe(self, run: Run) -> str:
        return self.inner.describe(run)

    def code_ready(self, run: Run) -> bool:
        return False


Answers = Callable[[Run], Requirements]
"""Step 1: how a run gets its requirements (answers gathered by the CLI, or a project's spec)."""


@dataclass(frozen=True)
class Step:
    """One named step: ``fn`` takes the run and returns it with the step's output filled in."""

    number: int
    name: str
    fn: Callable[[Run], Run]
    detail: Callable[[Run], str]
    needs: tuple[str, ...] = ()
    """The fields of :class:`Run` this step reads: it refuses to run before they are known."""


class Checklist:
    """Runs steps and records each; a step that raises is recorded as failed."""

    def __init__(self) -> None:
        self.records: list[StepRecord] = []

    def run(self, step: Step, run: Run) -> Run:
        missing = [name for name in step.needs if getattr(run, name) is None]
        if missing:
            raise WsforgeError(
                f"step {step.number} ({step.name}) cannot run before {', '.join(missing)} is known"
            )
        start = time.monotonic()
        try:
            run = step.fn(run)
        except BaseException as exc:
            self.records.append(
                StepRecord(step.number, step.name, now_iso(), "failed", str(exc), time.monotonic() - start)
            )
            run.checklist = list(self.records)
            raise
        self.records.append(
            StepRecord(step.number, step.name, now_iso(), "ok", step.detail(run), time.monotonic() - start)
        )
        run.checklist = list(self.records)
        return run


@dataclass
class Pipeline:
    """Steps 1-5 with their collaborators passed in: the one spine of ``new`` and ``regenerate``."""

    answers: Answers
    answers_detail: str
    store: MemoryStore
    context: ContextProvider
    config: AgentConfig
    writer: Writer
    _shaped: str = field(default="", init=False)

    def steps(self) -> list[Step]:
        """In the order the steps depend on each other (memory before the design it shapes)."""
        return [
            Step(1, STEP_NAMES[1], self.requirements, lambda _run: self.answers_detail),
            Step(3, STEP_NAMES[3], self.memory, memory_detail, needs=("requirements",)),
            Step(2, STEP_NAMES[2], self.architecture, self.architecture_detail, ("requirements", "memory")),
            Step(4, STEP_NAMES[4], self.implement, self.writer.describe, needs=("spec",)),
            Step(5, STEP_NAMES[5], self.review, self.review_detail, needs=("spec", "memory")),
        ]

    def __call__(self, run: Run) -> RunResult:
        checklist = Checklist()
        for step in self.steps():
            run = checklist.run(step, run)
        result = RunResult.of(run)
        if result.wrote:
            # Step 5's ending: the documents and memory record only what was written.
            result.documents = write_reports(result, self.config)
            remember(
                result, self.store, self.config, event=self.writer.event, changes=self.writer.history(result)
            )
        return result

    # -- the steps ---------------------------------------------------------------------------

    def requirements(self, run: Run) -> Run:
        run.requirements = self.answers(run)
        return run

    def memory(self, run: Run) -> Run:
        project = need(run.requirements, "the requirements").project_name
        run.memory = self.store.get_skill_memory(self.config.skill, project)
        return run

    def architecture(self, run: Run) -> Run:
        knowledge = self.context.get_index(KNOWLEDGE_DOMAIN)
        run.spec = run.designed = design(need(run.requirements, "the requirements"), run.memory, knowledge)
        self._shaped = self.writer.shape(run)
        return run

    def architecture_detail(self, run: Run) -> str:
        spec = need(run.spec, "the spec")
        applied = [d.key for d in spec.decisions if d.source.value == "memory"]
        parts = [
            f"{len(spec.decisions)} decisions; {spec.scaling.strategy.value}, {spec.scaling.instances} instance(s)"
        ]
        if applied:
            parts.append(f"{len(applied)} convention(s) applied ({', '.join(applied)})")
        if self._shaped:
            parts.append(self._shaped)
        return "; ".join(parts) + contract_warning(need(run.memory, "memory"), spec)

    def implement(self, run: Run) -> Run:
        run.files = render_project(need(run.spec, "the spec"))
        self.writer.plan(run)
        self.writer.apply(run)
        return run

    def review(self, run: Run) -> Run:
        # Code with conflict markers does not parse: review the spec alone until it is resolved.
        code = self.writer.code_ready(run) and not run.conflicts
        run.review = review_step(
            need(run.spec, "the spec"), need(run.memory, "memory"), run.target, code=code
        )
        return run

    def review_detail(self, run: Run) -> str:
        skipped = "; code checks skipped until the conflicts are resolved" if run.conflicts else ""
        return findings_summary(need(run.review, "the review")) + skipped


def memory_detail(run: Run) -> str:
    """Step 3's checklist line: greenfield, or the file read and what it holds."""
    memory = need(run.memory, "memory")
    if memory.greenfield:
        return "greenfield: no memory for this project yet"
    conventions = list(memory.conventions.model_dump(exclude_none=True))
    return (
        f"loaded {memory.path}; {len(conventions)} convention(s)"
        + (f" ({', '.join(conventions)})" if conventions else "")
        + f"; {len(memory.known_issues)} known issue(s)"
    )


def run_new(
    requirements: Requirements,
    *,
    store: MemoryStore,
    context: ContextProvider,
    config: AgentConfig,
    target: Path,
    force: bool = False,
    dry_run: bool = False,
    requirements_detail: str = "answers validated",
) -> RunResult:
    """Steps 1-5 for a new (or re-generated with ``--force``) project."""
    fresh = FreshWriter(force=force)
    pipeline = Pipeline(
        answers=lambda _run: requirements,
        answers_detail=requirements_detail,
        store=store,
        context=context,
        config=config,
        writer=DryRunWriter(fresh) if dry_run else fresh,
    )
    return pipeline(Run(None, None, None, {}, target, dry_run=dry_run))


def contract_warning(memory: MemoryEntry, spec: ArchitectureSpec) -> str:
    """Step 2's warning when this design changes the wire contract memory recorded (else "")."""
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


def remember(
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
    spec, memory, requirements = result.spec, result.memory, result.requirements
    project = spec.project
    contract = message_contract(spec, _text(result.files.get("asyncapi.yaml")))
    broken = [text for _, text in breaking_changes(memory.message_schema, contract)]
    issues, opened, closed = _sync_known_issues(memory.known_issues, result.review)
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
            "answers": requirements.model_dump(mode="json"),
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


def plan_summary(spec: ArchitectureSpec, target: Path) -> list[tuple[str, str]]:
    """``(action, path)`` rows for ``--dry-run``: create, overwrite or keep."""
    rows = []
    for planned in plan_files(spec):
        dest = target / planned.path
        rows.append(("overwrite" if dest.exists() else "create", planned.path))
    return rows
