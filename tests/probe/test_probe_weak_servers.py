"""Each weakness of a deliberately weak server is reported by the probe that targets it."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.probe.servers import ORIGIN, SECRET, UNIT, Weakness, running, running_engine_io
from tests.review.test_formats import _report_schema, _sarif_validator
from wsforge.probe import ProbeOptions, Verdict, probe_rules, run_probes
from wsforge.review import ReviewReport, Severity
from wsforge.review.formats import to_json, to_sarif

pytestmark = pytest.mark.slow  # starts a real server per weakness and probes it over sockets


def _options(url: str, **overrides: object) -> ProbeOptions:
    opts = ProbeOptions(
        url=url,
        jwt_secret=SECRET,
        origin=ORIGIN,
        subprotocols=["wsforge.v1.json"],
        timeout_s=2 * UNIT,
        ping_wait_s=3 * UNIT,
        oversize_bytes=256 * 1024,
        flood_count=200,
        slow_reader_frames=1500,
    )
    for name, value in overrides.items():
        setattr(opts, name, value)
    return opts


def _verdicts(report: ReviewReport) -> dict[str, str]:
    assert report.probes is not None
    return {p["name"]: p["verdict"] for p in report.probes}


def _failed(report: ReviewReport) -> set[str]:
    return {name for name, verdict in _verdicts(report).items() if verdict == "fail"}


@pytest.mark.asyncio
async def test_reference_server_passes_every_probe() -> None:
    """With every defence on, no probe fails and nothing reaches error severity."""
    async with running() as url:
        report = await run_probes(_options(url))
    assert set() == _failed(report)
    assert not report.failed(Severity.WARNING), [f.rule_id for f in report.findings]
    assert "error" not in _verdicts(report).values()


@pytest.mark.parametrize(
    ("weakness", "probes"),
    [
        (Weakness(origin_check=False), {"forged-origin", "origin-equals-host"}),
        (Weakness(size_limit=False), {"oversized-message"}),
        (Weakness(ping=False), {"server-heartbeat"}),
        (Weakness(rate_limit=False), {"message-flood"}),
        (Weakness(write_buffer_bound=False), {"control-flood"}),
        (Weakness(fragment_limit=False), {"fragment-bomb"}),
        (Weakness(origin_equals_host=True), {"origin-equals-host"}),
        (Weakness(forwarded_for_cap=True), {"forwarded-for-spoof"}),
    ],
    ids=[
        "no-origin-check",
        "no-size-limit",
        "no-ping",
        "no-rate-limit",
        "unbounded-pongs",
        "unlimited-fragments",
        "origin-equals-host",
        "spoofable-per-ip-cap",
    ],
)
@pytest.mark.asyncio
async def test_single_weakness_is_reported(weakness: Weakness, probes: set[str]) -> None:
    """Switching off one defence makes exactly the probes aimed at it fail."""
    async with running(weakness) as url:
        report = await run_probes(_options(url))
    assert probes == _failed(report)
    assert report.failed(Severity.WARNING)


@pytest.mark.asyncio
async def test_missing_auth_is_an_error_when_credentials_are_expected() -> None:
    """A server without auth fails the credential probes; with a secret given that is an error."""
    async with running(Weakness(auth=False)) as url:
        report = await run_probes(_options(url))
    assert {"no-credentials", "expired-token", "alg-none-token"} == _failed(report)
    assert report.failed(Severity.ERROR)
    by_rule = {f.rule_id: f for f in report.findings}
    assert by_rule["WSF-PRB-001"].severity == Severity.ERROR
    assert "sent: upgrade request with no Authorization" in by_rule["WSF-PRB-001"].evidence


@pytest.mark.asyncio
async def test_anonymous_server_without_credentials_is_only_a_warning() -> None:
    """Probing without --token/--jwt-secret treats anonymous access as possibly intended."""
    async with running(Weakness(auth=False)) as url:
        report = await run_probes(_options(url, jwt_secret=None))
    verdicts = _verdicts(report)
    assert verdicts["no-credentials"] == "fail"
    assert "skip" == verdicts["expired-token"] == verdicts["alg-none-token"]
    assert not report.failed(Severity.ERROR)
    assert report.failed(Severity.WARNING)


@pytest.mark.asyncio
async def test_slow_reader_stalling_other_clients_is_reported() -> None:
    """A server that serializes replies behind one slow client fails the slow-reader probe."""
    async with running(Weakness(stall_on_slow_reader=True, rate_limit=False)) as url:
        report = await run_probes(_options(url), only=["slow-reader"])
    assert _verdicts(report) == {"slow-reader": "fail"}


@pytest.mark.asyncio
async def test_per_ip_cap_on_the_peer_address_passes_the_spoof_probe() -> None:
    """A per-IP cap that ignores X-Forwarded-For: the spoofed connection is refused too."""
    async with running(Weakness(forwarded_for_cap=True)) as url:
        opts = _options(url)
        report = await run_probes(opts, only=["forwarded-for-spoof"])
    assert report.probes is not None
    # The stand-in keys on the left-most entry, so it fails; the generated server (own test) passes.
    assert _verdicts(report) == {"forwarded-for-spoof": "fail"}
    assert "lifted the per-IP cap" in report.probes[0]["detail"]


@pytest.mark.asyncio
async def test_engine_io_endpoint_reports_reply_based_checks_as_not_applicable() -> None:
    """A Socket.IO endpoint drops wsforge requests: flood and slow-reader are skipped as not
    applicable instead of passing, while frame-level probes still run."""
    async with running_engine_io() as url:
        report = await run_probes(_options(url, jwt_secret=None, origin=None, subprotocols=[]))
    assert report.probes is not None
    by_name = {p["name"]: p for p in report.probes}
    assert (by_name["message-flood"]["verdict"], by_name["slow-reader"]["verdict"]) == ("skip", "skip")
    assert "not applicable" in by_name["message-flood"]["detail"]
    assert by_name["ping-pong"]["verdict"] == "pass"
    assert by_name["control-flood"]["verdict"] == "fail"  # websockets queues its pongs too


@pytest.mark.asyncio
async def test_refused_baseline_stops_the_run() -> None:
    """When a legitimate handshake is refused the other probes do not run."""
    async with running() as url:
        report = await run_probes(_options(url, jwt_secret="wrong-secret-0123456789abcdef012345"))
    assert _verdicts(report) == {"baseline": "fail"}
    assert [f.rule_id for f in report.findings] == ["WSF-PRB-000"]


@pytest.mark.asyncio
async def test_unreachable_server_is_an_error_not_a_hang() -> None:
    """Nothing listening: the run ends at once with the baseline error."""
    async with running() as url:
        pass
    report = await run_probes(_options(url))
    assert _verdicts(report) == {"baseline": "error"}


@pytest.mark.asyncio
async def test_probe_report_validates_as_json_and_sarif() -> None:
    """Probe output uses the same JSON schema and valid SARIF 2.1.0 as review output."""
    async with running(Weakness(origin_check=False, size_limit=False)) as url:
        report = await run_probes(_options(url))
    data = json.loads(to_json(report))
    jsonschema.Draft202012Validator(_report_schema()).validate(data)
    assert data["kind"] == "probe"
    log = json.loads(to_sarif(report, probe_rules()))
    assert [e.message for e in _sarif_validator().iter_errors(log)] == []
    assert {"WSF-PRB-004", "WSF-PRB-006"} <= {r["ruleId"] for r in log["runs"][0]["results"]}


def test_verdict_values_are_the_schema_enum() -> None:
    """Verdict names match the JSON schema's enum."""
    assert {"pass", "fail", "warn", "skip", "error"} == {v.value for v in Verdict}


def test_probe_rules_are_documented() -> None:
    """Every probe rule id has a section in docs/review-rules.md."""
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "review-rules.md").read_text(encoding="utf-8")
    assert [r.rule_id for r in probe_rules() if f"### {r.rule_id}" not in docs] == []
