"""The run record: what one run of the five steps knows so far.

:class:`Run` starts empty (a target, whether it is a dry run) and each step of
:mod:`~wsforge.workflow` fills in its part; step 5's documents (:mod:`~wsforge.reports`) and the
CLI read the finished record. It lives apart from the pipeline so that readers of a run do not
import the code that makes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import WsforgeError
from .memory import MemoryEntry
from .requirements import Requirements
from .review import ReviewReport
from .spec import ArchitectureSpec
from .update.merge import Action, FilePlan
from .update.spec_edits import Change, Edit

T = TypeVar("T")


@dataclass
class StepRecord:
    """One line of the compliance checklist: which step ran, when, and with what result."""

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
class Run:
    """One run of steps 1-5; a field is ``None`` (or empty) until the step that makes it has run."""

    requirements: Requirements | None
    spec: ArchitectureSpec | None
    memory: MemoryEntry | None
    files: dict[str, bytes]
    """Step 4's render, ``{path: bytes}``."""
    target: Path
    checklist: list[StepRecord] = field(default_factory=list)
    documents: list[Path] = field(default_factory=list)
    review: ReviewReport | None = None
    dry_run: bool = False
    designed: ArchitectureSpec | None = None
    """Step 2's design before the project's own edits of ``wsforge.yaml`` were laid over it."""
    plans: list[FilePlan] = field(default_factory=list)
    """A merge into an existing project: one plan per file (empty for a fresh write)."""
    changes: list[Change] = field(default_factory=list)
    """A merge: every field that differs from the last render, with its cause."""
    overrides: list[Edit] = field(default_factory=list)
    """A merge: the hand edits of ``wsforge.yaml`` kept over the new design."""
    wrote: bool = False
    """Step 4 changed the filesystem (false for a dry run, or a merge with nothing new)."""

    @property
    def conflicts(self) -> list[FilePlan]:
        return [p for p in self.plans if p.action == Action.CONFLICT]

    @property
    def counts(self) -> dict[str, int]:
        """``{action: number of files}`` of the merge plan."""
        counts: dict[str, int] = {}
        for plan in self.plans:
            counts[plan.action.value] = counts.get(plan.action.value, 0) + 1
        return counts


@dataclass
class RunResult(Run):
    """A :class:`Run` every step has filled in: what the CLI, the documents and memory read."""

    requirements: Requirements
    spec: ArchitectureSpec
    memory: MemoryEntry

    @classmethod
    def of(cls, run: Run) -> RunResult:
        """The finished record; an error names the first step output still missing."""
        values = {f.name: getattr(run, f.name) for f in fields(run)}
        values["requirements"] = need(run.requirements, "the requirements")
        values["spec"] = need(run.spec, "the spec")
        values["memory"] = need(run.memory, "memory")
        return cls(**values)


def need(value: T | None, what: str) -> T:
    """``value``, or an error naming the step output that is missing (a step ran out of order)."""
    if value is None:
        raise WsforgeError(f"{what} is not known yet: the step that makes it has not run")
    return value
