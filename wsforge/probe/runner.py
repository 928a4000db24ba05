"""Runs the probes one after another against one URL and turns the results into a report.

Probes run sequentially so that they do not trip each other's rate or connection limits, and each
is cancelled at its budget, so the whole run is bounded by the sum of the budgets.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from ..errors import UserError
from ..review.model import Check, Criterion, CriterionResult, Finding, ReviewReport, Rule, Severity
from .probes import PROBES, Probe, ProbeOptions, ProbeResult, Verdict, connect
from .rawws import OP_TEXT, ProbeConnectionError, RawWebSocket

BASELINE_RULE = Rule(
    "WSF-PRB-000",
    Criterion.RESILIENCE,
    Severity.ERROR,
    "Well-formed handshake refused",
    why="The probe first connects like a legitimate client (with the given token and Origin). If "
    "that fails, the other probes cannot tell a defence from a refusal, so none of them ran.",
    fix="Check the URL, path, --token/--jwt-secret, --origin and --subprotocol; then probe again.",
    check=lambda spec: iter(()),
)


def probe_rules() -> list[Rule]:
    """Every probe rule, for SARIF ``tool.driver.rules`` and the docs."""
    return [BASELINE_RULE, *(p.rule for p in PROBES)]


def validate_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UserError(f"{url!r} is not a ws:// or wss:// URL (e.g. ws://127.0.0.1:8000/ws)")


async def run_probes(opts: ProbeOptions, *, only: list[str] | None = None) -> ReviewReport:
    """Run the probes (all, or those named in ``only``) and build the report.

    Raises:
        UserError: the URL is not ws:// or wss://, or ``only`` names an unknown probe.
    """
    validate_url(opts.url)
    selected = PROBES
    if only:
        unknown = sorted(set(only) - {p.name for p in PROBES})
        if unknown:
            raise UserError(
                f"unknown probe(s): {', '.join(unknown)}; known: {', '.join(p.name for p in PROBES)}"
            )
        selected = [p for p in PROBES if p.name in only]
    parts = urlsplit(opts.url)
    report = ReviewReport(
        subject=opts.url, project=f"{parts.hostname}:{parts.port or ''}".rstrip(":"), kind="probe"
    )
    report.criteria = {
        c: CriterionResult(c) for c in (Criterion.SECURITY, Criterion.INTEGRITY, Criterion.RESILIENCE)
    }
    results: list[ProbeResult] = []

    baseline = await _baseline(opts)
    if baseline is not None:
        results.append(baseline)
        _record(report, BASELINE_RULE, baseline)
    else:
        for probe in selected:
            result = await _run_one(probe, opts)
            results.append(result)
            _record(report, probe.rule, result)
    report.probes = [r.to_dict() for r in results]
    report.findings.sort(key=lambda f: (-f.severity.rank, f.rule_id))
    return report


async def _baseline(opts: ProbeOptions) -> ProbeResult | None:
    started = time.monotonic()
    sent = "upgrade request as a legitimate client"
    try:
        ws = await connect(opts)
    except ProbeConnectionError as exc:
        return ProbeResult(
            "baseline",
            BASELINE_RULE.rule_id,
            Verdict.ERROR,
            sent,
            str(exc),
            seconds=time.monotonic() - started,
        )
    try:
        if ws.handshake.accepted:
            opts.engine_io = opts.engine_io or await _speaks_engine_io(opts, ws)
            return None
        return ProbeResult(
            "baseline",
            BASELINE_RULE.rule_id,
            Verdict.FAIL,
            sent,
            ws.handshake.describe(),
            seconds=time.monotonic() - started,
        )
    finally:
        await ws.close_transport()


async def _speaks_engine_io(opts: ProbeOptions, ws: RawWebSocket) -> bool:
    """An Engine.IO endpoint (Socket.IO's transport): ``/socket.io/`` or ``EIO=`` in the URL, or
    an Engine.IO open packet (``0{"sid":...}``) as the first frame. Its checks that rely on
    replies to a wsforge request are then reported as not applicable, not as passed."""
    parts = urlsplit(opts.url)
    if "/socket.io/" in f"{parts.path}/" or "EIO=" in parts.query:
        return True
    try:
        frame = await ws.recv_frame(min(0.5, opts.timeout_s))
    except ProbeConnectionError:
        return False
    return frame.opcode == OP_TEXT and frame.payload.startswith(b"0{") and b'"sid"' in frame.payload


async def _run_one(probe: Probe, opts: ProbeOptions) -> ProbeResult:
    started = time.monotonic()
    budget = probe.budget(opts)
    try:
        result = await asyncio.wait_for(probe.run(opts), budget)
    except TimeoutError:
        result = ProbeResult(
            probe.name, probe.rule.rule_id, Verdict.ERROR, "", "", f"cancelled after {budget:g} s"
        )
    except (ProbeConnectionError, ConnectionError, OSError) as exc:
        result = ProbeResult(
            probe.name, probe.rule.rule_id, Verdict.ERROR, "", "", f"{type(exc).__name__}: {exc}"
        )
    result.seconds = time.monotonic() - started
    return result


_SEVERITY_FOR = {Verdict.WARN: Severity.NOTE, Verdict.ERROR: Severity.WARNING}


def _record(report: ReviewReport, rule: Rule, result: ProbeResult) -> None:
    evidence = f"sent: {result.sent or '-'}; got: {result.received or '-'}" + (
        f" ({result.detail})" if result.detail else ""
    )
    passed = result.verdict in (Verdict.PASS, Verdict.SKIP, Verdict.WARN)
    report.criteria.setdefault(rule.criterion, CriterionResult(rule.criterion)).checks.append(
        Check(rule.rule_id, rule.title, passed, f"{result.verdict.value}: {evidence}")
    )
    if result.verdict in (Verdict.PASS, Verdict.SKIP):
        return
    severity = result.severity or _SEVERITY_FOR.get(result.verdict, rule.severity)
    title = rule.title if result.verdict == Verdict.FAIL else f"{rule.title} (inconclusive)"
    report.findings.append(
        Finding(
            rule_id=rule.rule_id,
            severity=severity,
            title=title,
            key=result.name,
            file=None,
            line=None,
            why=rule.why,
            fix=rule.fix,
            evidence=evidence,
            criterion=rule.criterion,
        )
    )
