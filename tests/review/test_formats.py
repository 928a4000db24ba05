"""JSON, SARIF, Markdown and the terminal table render the same report, and validate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from tests.review.helpers import FIXTURES, apply, base_data, write_spec
from wsforge.review import ReviewReport, catalogue, review_spec
from wsforge.review.formats import print_table, to_json, to_markdown, to_sarif
from wsforge.review.load import load_target

REPO = Path(__file__).resolve().parents[2]
FLAWED = {"allowed_origins": ["*"], "heartbeat.timeout_s": 3, "reconnect.base_s": 0.01}


@pytest.fixture
def flawed(tmp_path: Path) -> ReviewReport:
    target = load_target(write_spec(tmp_path, apply(base_data("chat"), FLAWED)))
    return review_spec(target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines)


@pytest.fixture
def clean(tmp_path: Path) -> ReviewReport:
    target = load_target(write_spec(tmp_path, base_data("market-feed")))
    return review_spec(target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines)


def _report_schema() -> dict[str, object]:
    schema: dict[str, object] = json.loads(
        (REPO / "schemas" / "review_report.schema.json").read_text(encoding="utf-8")
    )
    return schema


def _sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads((FIXTURES / "sarif-2.1.0-rtm.5.json").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


@pytest.mark.parametrize("name", ["flawed", "clean"])
def test_json_validates_against_its_schema(name: str, request: pytest.FixtureRequest) -> None:
    """`--format json` output is valid against schemas/review_report.schema.json."""
    report: ReviewReport = request.getfixturevalue(name)
    data = json.loads(to_json(report))
    jsonschema.Draft202012Validator(_report_schema()).validate(data)
    assert len(report.findings) == len(data["findings"])


def test_json_carries_every_finding_field(flawed: ReviewReport) -> None:
    """Rule id, severity, key, file, line, why and fix are all in the JSON."""
    finding = next(f for f in json.loads(to_json(flawed))["findings"] if f["rule_id"] == "WSF-SEC-003")
    assert finding["severity"] == "error"
    assert finding["key"] == "allowed_origins.0"
    assert finding["file"].endswith("wsforge.yaml")
    assert isinstance(finding["line"], int)


@pytest.mark.parametrize("name", ["flawed", "clean"])
def test_sarif_validates_against_the_official_schema(name: str, request: pytest.FixtureRequest) -> None:
    """`--format sarif` output is valid SARIF 2.1.0 (the OASIS schema, vendored)."""
    report: ReviewReport = request.getfixturevalue(name)
    log = json.loads(to_sarif(report, catalogue()))
    errors = sorted(_sarif_validator().iter_errors(log), key=str)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_sarif_results_point_at_rules_and_lines(flawed: ReviewReport) -> None:
    """Each result names its rule by id and index and has the file and line of the key."""
    run = json.loads(to_sarif(flawed, catalogue()))["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert len(catalogue()) == len(rules)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uri"].endswith("wsforge.yaml")
        assert physical["region"]["startLine"] >= 1
    assert {"error", "warning"} <= {r["level"] for r in run["results"]}


def test_markdown_lists_findings_criteria_and_checks(flawed: ReviewReport) -> None:
    """The step-5 document has the verdict, each finding with why/fix, and every check run."""
    text = to_markdown(flawed)
    assert text.startswith("# WebSocket review: chat-demo\n")
    assert "error(s) must be fixed" in text
    for finding in flawed.findings:
        assert f"### {finding.rule_id} ({finding.severity.value})" in text
        assert finding.fix in text
    for rule_id in ("WSF-RES-001", "WSF-SCL-008", "WSF-MEM-001"):
        assert f"| {rule_id} |" in text
    assert "| security | **fail** |" in text
    assert "\n\n\n" not in text


def test_markdown_of_a_clean_review_says_so(clean: ReviewReport) -> None:
    """A clean report says no rule fired instead of an empty section."""
    text = to_markdown(clean)
    assert "**Verdict: clean**" in text
    assert "No rule fired." in text


def test_markdown_is_deterministic(flawed: ReviewReport) -> None:
    """Rendering twice gives identical text (no timestamps)."""
    assert to_markdown(flawed) == to_markdown(flawed)


def test_table_shows_each_finding_and_the_verdicts(flawed: ReviewReport) -> None:
    """The terminal table names every rule that fired and each criterion's verdict."""
    console = Console(record=True, width=200, color_system=None)
    print_table(flawed, console)
    text = console.export_text()
    for finding in flawed.findings:
        assert finding.rule_id in text
    assert "security: fail" in text
    assert "scale: pass" in text
