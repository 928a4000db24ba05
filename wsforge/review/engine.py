"""Runs the catalogue against a spec (and optionally a generated project) and builds the report.

This is the one entry point step 5 of ``wsforge new`` and ``wsforge review`` share, so the report a
user gets at generation time and the one CI gets later are the same checks with the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._yaml import locate
from ..spec import ArchitectureSpec
from . import drift
from .model import Check, Criterion, CriterionResult, Finding, Hit, ReviewReport, Rule, Severity
from .rules import CONTRACT_RULE, KNOWN_ISSUE_RULE, RULES, contract_hits, known_issue_hits


def review_spec(
    spec: ArchitectureSpec,
    *,
    spec_path: Path | None = None,
    spec_lines: dict[tuple[str, ...], int] | None = None,
    project_dir: Path | None = None,
    known_issues: list[str] | None = None,
    contract: dict[str, Any] | None = None,
) -> ReviewReport:
    """Check ``spec`` against every rule and return the findings and per-criterion results.

    Args:
        spec: the architecture to audit.
        spec_path: the file the spec was read from; findings name it.
        spec_lines: ``{key path: line}`` from :func:`wsforge._yaml.load_yaml_with_lines`, so each
            finding can point at the offending line.
        project_dir: a generated project; adds the drift checks (code vs spec).
        known_issues: memory's known issues (``"<id>: <summary>"``), merged with the spec's own.
        contract: memory's ``message_schema`` (the wire contract of the last run); changes that
            break its clients are ``WSF-MEM-002`` findings. Message shapes are compared when
            ``project_dir`` holds an ``asyncapi.yaml``.

    Pure apart from reading files under ``project_dir``; never writes.
    """
    lines = spec_lines or {}
    file = str(spec_path) if spec_path is not None else None
    criteria = {criterion: CriterionResult(criterion) for criterion in Criterion}
    findings: list[Finding] = []
    dumped = spec.model_dump(mode="json")

    def record(rule: Rule, hits: Iterable[Hit]) -> None:
        hits = list(hits)
        for hit in hits:
            findings.append(_finding(rule, hit, file, lines))
        blocking = [hit for hit in hits if rule.severity.at_least(Severity.WARNING)]
        evidence = "; ".join(hit.evidence for hit in hits) if hits else _observed(dumped, rule.looks_at)
        criteria[rule.criterion].checks.append(Check(rule.rule_id, rule.title, not blocking, evidence))

    for rule in RULES:
        record(rule, rule.check(spec))
    if project_dir is not None:
        for drift_rule in drift.DRIFT_RULES:
            record(drift_rule, drift_rule.check(spec, project_dir))
    derived = drift.derivation_hits(spec)
    if derived is not None:
        record(drift.DERIVATION_RULE, derived)

    issues = list(dict.fromkeys([*spec.known_issues, *(known_issues or [])]))
    fired = {finding.rule_id for finding in findings}
    record(KNOWN_ISSUE_RULE, known_issue_hits(issues, fired))
    record(CONTRACT_RULE, contract_hits(contract, _current_contract(spec, project_dir)))

    findings.sort(key=lambda f: (-f.severity.rank, f.rule_id, f.key))
    return ReviewReport(
        subject=file or (str(project_dir) if project_dir else spec.project),
        project=spec.project,
        findings=findings,
        criteria=criteria,
    )


def _current_contract(spec: ArchitectureSpec, project_dir: Path | None) -> dict[str, Any]:
    from ..contract import message_contract

    asyncapi = project_dir / "asyncapi.yaml" if project_dir is not None else None
    try:
        text = asyncapi.read_text(encoding="utf-8") if asyncapi is not None and asyncapi.is_file() else None
        return message_contract(spec, text)
    except (OSError, UnicodeDecodeError, ValueError):
        return message_contract(spec)  # an unreadable asyncapi.yaml: compare what the spec says


def catalogue() -> list[Rule]:
    """Every rule a review can report, in catalogue order (SARIF ``tool.driver.rules``, docs)."""
    return [*RULES, *drift.DRIFT_RULES, drift.DERIVATION_RULE, KNOWN_ISSUE_RULE, CONTRACT_RULE]


def _finding(rule: Rule, hit: Hit, file: str | None, lines: dict[tuple[str, ...], int]) -> Finding:
    where_file: str | None = file
    where_line = locate(lines, hit.key) if lines else None
    if hit.file is not None:
        where_file, where_line = hit.file, hit.line
    return Finding(
        rule_id=rule.rule_id,
        severity=rule.severity,
        title=rule.title,
        key=".".join(hit.key),
        file=where_file,
        line=where_line,
        why=rule.why,
        fix=rule.fix,
        evidence=hit.evidence,
        criterion=rule.criterion,
    )


def _observed(dumped: dict[str, Any], keys: tuple[str, ...]) -> str:
    """``key = value`` for each key a passing rule looked at: the evidence that it passed."""
    parts = []
    for key in keys:
        parts.append(f"{key} = {_resolve(dumped, key.split('.'))}")
    return "; ".join(parts) if parts else "ok"


def _resolve(node: Any, path: list[str]) -> Any:
    if not path:
        return node
    head, rest = path[0], path[1:]
    if head.endswith("[*]"):
        items = node.get(head[:-3], []) if isinstance(node, dict) else []
        return [_resolve(item, rest) for item in items]
    if isinstance(node, dict):
        return _resolve(node.get(head), rest)
    return None
