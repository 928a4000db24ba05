"""The review's vocabulary: severities, criteria, findings and the report.

Rules produce :class:`Hit` values (a spec key and the evidence); the engine turns them into
:class:`Finding` rows by adding what the rule knows (id, severity, why, fix) and where the key
lives (file and line). Keeping hits this small is what lets every rule stay a pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """How bad a finding is. Values are SARIF's ``level`` names so the mapping is the identity."""

    NOTE = "note"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_RANK = {Severity.NOTE: 0, Severity.WARNING: 1, Severity.ERROR: 2}


class Criterion(StrEnum):
    """The step-5 review criteria; every rule belongs to exactly one."""

    RESILIENCE = "resilience"
    INTEGRITY = "integrity"
    SECURITY = "security"
    SCALE = "scale"
    MEMORY = "memory"
    DRIFT = "drift"
    """Code or spec no longer matching what was generated and derived (projects only)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One place where a rule's condition holds.

    ``key`` is a path into the spec as :func:`wsforge._yaml.load_yaml_with_lines` records it
    (list indices as strings), so the engine can find its line without the rule knowing files.
    """

    key: tuple[str, ...]
    evidence: str
    file: str | None = None
    """Set by checks of a generated project's files; spec rules leave it to the engine."""
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired, with everything a reader needs to act on it."""

    rule_id: str
    severity: Severity
    title: str
    key: str
    """Dotted path of the offending spec key (``limits.max_payload_bytes``)."""
    file: str | None
    line: int | None
    why: str
    fix: str
    evidence: str = ""
    criterion: Criterion = Criterion.SECURITY

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity.value,
            "criterion": self.criterion.value,
            "title": self.title,
            "key": self.key,
            "file": self.file,
            "line": self.line,
            "evidence": self.evidence,
            "why": self.why,
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class Check:
    """One rule run against one input: passed or not, and what was looked at."""

    rule_id: str
    title: str
    passed: bool
    evidence: str


@dataclass(slots=True)
class CriterionResult:
    """All checks of one criterion. It passes when none of its checks found an error or warning."""

    criterion: Criterion
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [
                {"rule_id": c.rule_id, "title": c.title, "passed": c.passed, "evidence": c.evidence}
                for c in self.checks
            ],
        }


@dataclass(slots=True)
class ReviewReport:
    """What a review found. ``subject`` names what was reviewed (a file, a project, a URL)."""

    subject: str
    project: str
    findings: list[Finding] = field(default_factory=list)
    criteria: dict[Criterion, CriterionResult] = field(default_factory=dict)
    kind: str = "review"
    """``review`` for configs and projects, ``probe`` for a running server."""
    probes: list[dict[str, Any]] | None = None
    """Probe runs only: what each probe sent, got back and concluded."""

    def counts(self) -> dict[str, int]:
        counts = {severity.value: 0 for severity in Severity}
        for finding in self.findings:
            counts[finding.severity.value] += 1
        return counts

    def failed(self, fail_on: Severity = Severity.ERROR) -> bool:
        """True when a finding is at or above ``fail_on``: the CLI then exits with status 3."""
        return any(finding.severity.at_least(fail_on) for finding in self.findings)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "subject": self.subject,
            "project": self.project,
            "summary": self.counts(),
            "findings": [finding.to_dict() for finding in self.findings],
            "criteria": {c.value: result.to_dict() for c, result in self.criteria.items()},
        }
        if self.probes is not None:
            data["probes"] = self.probes
        return data


@dataclass(frozen=True, slots=True)
class Rule:
    """A catalogue entry. ``check`` is pure: it reads its input and yields hits, nothing else."""

    rule_id: str
    criterion: Criterion
    severity: Severity
    title: str
    why: str
    fix: str
    check: Callable[..., Iterable[Hit]]
    looks_at: tuple[str, ...] = ()
    """Dotted spec keys the rule reads; their values are the evidence when it passes."""
