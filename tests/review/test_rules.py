"""The rule catalogue against one-flaw configs and clean configs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.review.helpers import apply, base_data, clean_bases, load_flaws, write_spec
from wsforge._yaml import load_yaml_with_lines
from wsforge.architecture import design
from wsforge.requirements import load_requirements
from wsforge.review import Severity, catalogue, review_spec
from wsforge.review.load import load_target

REPO = Path(__file__).resolve().parents[2]
DERIVATION = "WSF-DRF-003"
PROJECT_ONLY = {"WSF-DRF-001", "WSF-DRF-002", "WSF-SCL-009"}
"""Rules that need a generated project; tests/review/test_drift.py covers them."""
NEEDS_MEMORY_CONTRACT = {"WSF-MEM-002"}
"""Rules that compare with memory's recorded wire contract; tests/unit/test_memory_contract.py covers them."""

FLAWS = load_flaws()


def _flaw_id(flaw: dict[str, Any]) -> str:
    return f"{flaw['rule']}-{'+'.join(flaw['set'])}"


@pytest.mark.parametrize("flaw", FLAWS, ids=[_flaw_id(f) for f in FLAWS])
def test_flaw_fires_exactly_its_rule(flaw: dict[str, Any], tmp_path: Path) -> None:
    """Each deliberately flawed config makes its rule fire, and no other (derivation notes aside)."""
    path = write_spec(tmp_path, apply(base_data(flaw["base"]), flaw["set"]))
    target = load_target(path)
    report = review_spec(target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines)

    fired = {f.rule_id for f in report.findings if f.rule_id != DERIVATION or flaw["rule"] == DERIVATION}
    assert {flaw["rule"]} == fired

    _, lines = load_yaml_with_lines(path.read_text(encoding="utf-8"))
    for finding in report.findings:
        assert str(path) == finding.file
        assert finding.line is not None, finding
        assert lines[tuple(finding.key.split("."))] == finding.line
        assert finding.why and finding.fix and finding.evidence


@pytest.mark.parametrize("base", clean_bases())
def test_clean_config_has_no_findings(base: str, tmp_path: Path) -> None:
    """The frozen clean specs pass every rule (derivation notes aside) and every criterion."""
    target = load_target(write_spec(tmp_path, base_data(base)))
    report = review_spec(target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines)

    assert [f.rule_id for f in report.findings if f.rule_id != DERIVATION] == []
    assert all(result.passed for result in report.criteria.values())
    assert not report.failed(Severity.WARNING)


def test_every_rule_has_a_flaw_fixture() -> None:
    """The flaw library covers the whole catalogue (project-only rules are covered in test_drift)."""
    ids = {rule.rule_id for rule in catalogue()}
    assert set() == ids - PROJECT_ONLY - NEEDS_MEMORY_CONTRACT - {flaw["rule"] for flaw in FLAWS}


def test_rule_ids_are_unique_stable_and_documented() -> None:
    """Ids look like WSF-XXX-NNN, appear once, and each has a section in docs/review-rules.md."""
    ids = [rule.rule_id for rule in catalogue()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"WSF-(RES|INT|SEC|SCL|MEM|DRF)-\d{3}", rule_id) for rule_id in ids)
    docs = (REPO / "docs" / "review-rules.md").read_text(encoding="utf-8")
    assert [rule_id for rule_id in ids if f"### {rule_id}" not in docs] == []


def test_every_criterion_reports_its_checks_with_evidence(tmp_path: Path) -> None:
    """report.criteria lists every rule run, each with pass/fail and the values it looked at."""
    target = load_target(write_spec(tmp_path, base_data("chat")))
    report = review_spec(target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines)

    checked = {check.rule_id for result in report.criteria.values() for check in result.checks}
    assert {rule.rule_id for rule in catalogue()} - PROJECT_ONLY == checked
    heartbeat = next(
        c for c in report.criteria[next(iter(report.criteria))].checks if c.rule_id == "WSF-RES-001"
    )
    assert heartbeat.evidence == "heartbeat.interval_s = 15.0"


def test_known_issue_naming_a_passing_rule_counts_as_fixed(tmp_path: Path) -> None:
    """A memory known issue that cites a rule id is closed once that rule passes."""
    target = load_target(write_spec(tmp_path, base_data("chat")))
    report = review_spec(target.spec, known_issues=["KI-1: origin was '*' (WSF-SEC-003)"])
    assert [f.rule_id for f in report.findings if f.rule_id != DERIVATION] == []


def test_known_issue_naming_a_failing_rule_stays_open(tmp_path: Path) -> None:
    """The same known issue stays open while its rule still fires."""
    data = apply(base_data("chat"), {"allowed_origins": ["*"]})
    target = load_target(write_spec(tmp_path, data))
    report = review_spec(target.spec, known_issues=["KI-1: origin was '*' (WSF-SEC-003)"])
    assert {"WSF-SEC-003", "WSF-MEM-001"} == {f.rule_id for f in report.findings if f.rule_id != DERIVATION}


def test_findings_are_sorted_by_severity_then_rule(tmp_path: Path) -> None:
    """Errors come first so the table and the document lead with what blocks CI."""
    data = apply(
        base_data("chat"), {"allowed_origins": ["*"], "heartbeat.timeout_s": 3, "reconnect.jitter": "none"}
    )
    target = load_target(write_spec(tmp_path, data))
    report = review_spec(target.spec, spec_lines=target.spec_lines)
    assert [f.rule_id for f in report.findings if f.rule_id != DERIVATION] == [
        "WSF-RES-004",
        "WSF-SEC-003",
        "WSF-RES-002",
    ]


EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize(
    "answers",
    list(EXAMPLES),
    ids=[p.stem for p in EXAMPLES],
)
def test_examples_derive_specs_without_errors(answers: Path) -> None:
    """What `wsforge new` derives from each shipped example passes the review at error level."""
    report = review_spec(design(load_requirements(answers)))
    assert [
        f"{f.rule_id} {f.key}: {f.evidence}" for f in report.findings if f.severity == Severity.ERROR
    ] == []


# --- the application's front door (issue 22): the passing side of each new rule -----------------

FRONT_DOOR_RULES = {
    "WSF-RES-010",
    "WSF-INT-007",
    "WSF-INT-008",
    "WSF-SEC-016",
    "WSF-SEC-017",
    "WSF-SEC-018",
    "WSF-SEC-019",
}


def _front_door_findings(tmp_path: Path, base: str, changes: dict[str, Any]) -> set[str]:
    target = load_target(write_spec(tmp_path, apply(base_data(base), changes)))
    report = review_spec(target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines)
    return {f.rule_id for f in report.findings} & FRONT_DOOR_RULES


@pytest.mark.parametrize(
    ("base", "changes"),
    [
        # every hook on, at step 2's deadline for each latency class, and a hook namespace it serves
        (
            "chat",
            {
                **{
                    f"hooks.{name}.enabled": True
                    for name in ("connect", "subscribe", "publish", "disconnect")
                },
                **{
                    f"hooks.{name}.timeout_ms": 500
                    for name in ("connect", "subscribe", "publish", "disconnect")
                },
                "channels.namespaces.0.auth": "hook",
            },
        ),
        ("public-ticker", {"hooks.connect.enabled": True, "hooks.connect.timeout_ms": 2000}),
        # loopback in every spelling; the broker library on a real broker; the API off with no publisher
        ("chat", {"server_api.host": "::1"}),
        ("chat", {"server_api.host": "localhost"}),
        ("market-feed", {"server_api.host": "127.0.0.1", "publisher.kind": "broker"}),
        ("chat", {"server_api.enabled": False, "publisher.kind": "none", "server_api.keys_env": ""}),
    ],
)
def test_front_door_rules_pass_a_sound_spec(base: str, changes: dict[str, Any], tmp_path: Path) -> None:
    assert _front_door_findings(tmp_path, base, changes) == set()


def test_the_clean_bases_render_the_api_on_loopback() -> None:
    """The frozen specs the rules pass on have the API (so its rules ran on something real)."""
    for base in ("chat", "market-feed", "public-ticker"):
        data = base_data(base)
        assert data["server_api"]["enabled"] is True
        assert data["server_api"]["host"] == "127.0.0.1"
    assert base_data("market-feed")["publisher"]["kind"] == "broker"
    assert base_data("chat")["publisher"]["kind"] == "http"


def test_a_hook_timeout_of_zero_is_refused_when_the_spec_is_read(tmp_path: Path) -> None:
    """0 ms would fail every hook at once: the spec reader refuses it with file, line and field."""
    from wsforge.errors import SpecError

    path = write_spec(
        tmp_path, apply(base_data("chat"), {"hooks.publish.enabled": True, "hooks.publish.timeout_ms": 0})
    )
    with pytest.raises(SpecError) as caught:
        load_target(path)
    line = load_yaml_with_lines(path.read_text(encoding="utf-8"))[1][("hooks", "publish", "timeout_ms")]
    assert f"{path}:{line}: hooks.publish.timeout_ms" in str(caught.value)


# --- deployment (issue 23): the passing side of each new rule ------------------------------------

DEPLOY_RULES = {"WSF-RES-009", "WSF-RES-011", "WSF-SCL-010", "WSF-SCL-011"}


def _deploy_findings(tmp_path: Path, base: str, changes: dict[str, Any]) -> list[str]:
    target = load_target(write_spec(tmp_path, apply(base_data(base), changes)))
    report = review_spec(target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines)
    return sorted(f.rule_id for f in report.findings if f.rule_id in DEPLOY_RULES)


@pytest.mark.parametrize(
    ("base", "changes", "fired"),
    [
        # Kubernetes over a broker, as step 2 plans it: grace 5 + 10 + 5, HPA 8..24
        ("iot-telemetry", {"deploy.kubernetes": True, "deploy.max_replicas": 24}, []),
        # the ceiling may equal the floor (a fixed count)
        ("iot-telemetry", {"deploy.kubernetes": True, "deploy.max_replicas": 8}, []),
        # one second above prestop + grace is enough; equal is not
        (
            "iot-telemetry",
            {"deploy.kubernetes": True, "deploy.max_replicas": 24, "deploy.termination_grace_s": 16},
            [],
        ),
        (
            "iot-telemetry",
            {"deploy.kubernetes": True, "deploy.max_replicas": 24, "deploy.termination_grace_s": 15},
            ["WSF-RES-011"],
        ),
        # a long drain is fine on Kubernetes when the manifests' grace covers it (WSF-RES-009 is
        # about the 30 s default of an orchestrator whose grace the spec does not set)
        (
            "iot-telemetry",
            {
                "deploy.kubernetes": True,
                "deploy.max_replicas": 24,
                "shutdown.grace_s": 45,
                "deploy.termination_grace_s": 55,
            },
            [],
        ),
        ("iot-telemetry", {"shutdown.grace_s": 45}, ["WSF-RES-009"]),
        # without Kubernetes the deploy section renders nothing these rules could break
        ("iot-telemetry", {"deploy.max_replicas": 1, "deploy.termination_grace_s": 1}, []),
        ("chat", {"deploy.kubernetes": False}, []),
    ],
)
def test_deploy_rules(base: str, changes: dict[str, Any], fired: list[str], tmp_path: Path) -> None:
    assert _deploy_findings(tmp_path, base, changes) == fired
