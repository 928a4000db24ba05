"""Report formats: terminal table (rich), Markdown, JSON and SARIF 2.1.0.

All of them render the same :class:`ReviewReport`, for a config review and for a probe alike.
JSON follows ``schemas/review_report.schema.json``; SARIF is what GitHub code scanning and other
SARIF viewers ingest (one run, the rules that fired as ``tool.driver.rules``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jinja2
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import __version__
from .._resources import templates_dir
from .model import Finding, ReviewReport, Rule, Severity

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/wsforge/wsforge/blob/main/docs/review-rules.md"
FORMATS = ("table", "markdown", "json", "sarif")

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.NOTE: "cyan"}


def to_json(report: ReviewReport) -> str:
    """The report as JSON (``schemas/review_report.schema.json``), stable key order."""
    data = {"wsforge_version": __version__, **report.to_dict()}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_sarif(report: ReviewReport, rules: Sequence[Rule] | None = None) -> str:
    """The report as a SARIF 2.1.0 log with one run.

    Args:
        rules: catalogue entries to describe in ``tool.driver.rules``; by default the rules that
            produced findings, described from the findings themselves.
    """
    descriptors: dict[str, dict[str, Any]] = {}
    for rule in rules or ():
        descriptors[rule.rule_id] = _descriptor(rule.rule_id, rule.title, rule.why, rule.fix, rule.severity)
    for finding in report.findings:
        descriptors.setdefault(
            finding.rule_id,
            _descriptor(finding.rule_id, finding.title, finding.why, finding.fix, finding.severity),
        )
    ids = list(descriptors)
    results = [_result(finding, ids.index(finding.rule_id), report.subject) for finding in report.findings]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "wsforge",
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": list(descriptors.values()),
                    }
                },
                "automationDetails": {"id": f"wsforge-{report.kind}/{report.project}/"},
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def _descriptor(rule_id: str, title: str, why: str, fix: str, severity: Severity) -> dict[str, Any]:
    return {
        "id": rule_id,
        "name": "".join(word.capitalize() for word in title.replace("-", " ").split() if word.isalnum()),
        "shortDescription": {"text": title},
        "fullDescription": {"text": why},
        "help": {"text": f"{why}\nFix: {fix}", "markdown": f"{why}\n\n**Fix:** {fix}"},
        "defaultConfiguration": {"level": severity.value},
        "helpUri": f"{INFORMATION_URI}#{rule_id.lower()}",
    }


def _result(finding: Finding, index: int, subject: str) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": (finding.file or subject).replace("\\", "/")}}
    if finding.line:
        physical["region"] = {"startLine": finding.line}
    text = f"{finding.title}: {finding.evidence}" if finding.evidence else finding.title
    return {
        "ruleId": finding.rule_id,
        "ruleIndex": index,
        "level": finding.severity.value,
        "message": {"text": f"{text} ({finding.key}). Fix: {finding.fix}"},
        "locations": [{"physicalLocation": physical}],
        "partialFingerprints": {"wsforgeKey/v1": f"{finding.rule_id}:{finding.key}"},
        "properties": {"criterion": finding.criterion.value, "key": finding.key},
    }


def to_markdown(report: ReviewReport, *, extra: dict[str, Any] | None = None) -> str:
    """The review document (``claudedocs/websocket_review_<project>.md``).

    Args:
        extra: more template context, e.g. ``compliance`` rows from the pipeline.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "reports")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - Markdown, not HTML
    )
    template = env.get_template("review.md.jinja")
    context = {"report": report.to_dict(), "wsforge_version": __version__, "compliance": [], **(extra or {})}
    return template.render(**context)


def print_table(report: ReviewReport, console: Console | None = None) -> None:
    """A readable terminal summary: one row per finding, then the verdict per criterion."""
    console = console or Console()
    counts = report.counts()
    if report.findings:
        table = Table(title=Text(f"wsforge {report.kind}: {report.subject}"), show_lines=True, expand=False)
        table.add_column("Rule", no_wrap=True)
        table.add_column("Severity", no_wrap=True)
        table.add_column("Where", overflow="fold")
        table.add_column("Finding", overflow="fold")
        table.add_column("Fix", overflow="fold")
        for finding in report.findings:
            where = finding.key
            if finding.file:
                where = f"{finding.file}:{finding.line}" if finding.line else finding.file
                where += f"\n{finding.key}"
            # Text cells are never parsed as markup: keys, evidence and fixes quote user values.
            table.add_row(
                Text(finding.rule_id),
                Text(finding.severity.value, style=_STYLE[finding.severity]),
                Text(where),
                Text.assemble(f"{finding.title}\n", (finding.evidence, "dim")),
                Text(finding.fix),
            )
        console.print(table)
    verdicts = Text("  ").join(
        Text.assemble(f"{criterion.value}: ", ("pass", "green") if result.passed else ("fail", "red"))
        for criterion, result in report.criteria.items()
        if result.checks
    )
    console.print(verdicts)
    console.print(
        Text(
            f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['note']} note(s) "
            f"in {sum(len(r.checks) for r in report.criteria.values())} checks"
        )
    )
