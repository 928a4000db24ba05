"""Drift: a generated project's code, or a hand-edited spec, no longer matching the spec.

Three sources of drift, each its own rule:

- ``settings.py`` defaults edited by hand (the server runs with a limit the spec does not state);
- files of the last render deleted (``.wsforge/manifest.json`` lists them, with their hashes);
- a spec value that differs from what the requirements imply today (re-derived with
  :func:`wsforge.architecture.design`), which is only a note: edits are allowed, but should be
  deliberate.

Reading files is the only I/O here; nothing is written.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..spec import ArchitectureSpec, Source
from .model import Criterion, Hit, Rule, Severity

SETTINGS_SECTIONS = ("limits", "heartbeat", "reconnect", "shutdown", "circuit_breaker", "auth")
"""Spec sections whose scalar values the generated ``settings.py`` carries as defaults."""
EXPECTED_MODULES = ("settings.py", "protocol.py", "dispatch.py", "server.py", "auth.py", "limits.py")
"""Checked when a project has no manifest: the modules every generated server has."""
DERIVED_KEYS = (
    "transport",
    "scaling.strategy",
    "scaling.instances",
    "auth.mode",
    "limits.max_payload_bytes",
    "limits.rate_per_s",
    "limits.max_connections_total",
    "heartbeat.interval_s",
    "heartbeat.timeout_s",
    "reconnect.cap_s",
)
"""Decisions worth a note when a spec no longer matches a fresh derivation."""


def settings_drift(spec: ArchitectureSpec, project_dir: Path) -> Iterator[Hit]:
    path = project_dir / "src" / spec.package / "settings.py"
    if not path.is_file():
        return
    defaults = read_settings_defaults(path.read_text(encoding="utf-8"))
    rel = str(path.relative_to(project_dir))
    dumped = spec.model_dump(mode="json")
    for key, value in _spec_scalars(dumped):
        for name in _setting_names(key):
            if name in defaults:
                actual, line = defaults[name]
                if key == "allowed_origins" and isinstance(actual, tuple | list):
                    # The demo page's origins are rendered in on top of the spec's (never drift).
                    actual = tuple(o for o in actual if o not in DEMO_PAGE_ORIGINS or o in (value or ()))
                if not _same(actual, value):
                    yield Hit(
                        tuple(key.split(".")),
                        f"settings.{name} = {actual!r} but {key} = {value!r} in wsforge.yaml",
                        file=rel,
                        line=line,
                    )
                break


def deleted_files(spec: ArchitectureSpec, project_dir: Path) -> Iterator[Hit]:
    manifest = project_dir / ".wsforge" / "manifest.json"
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
        except (json.JSONDecodeError, AttributeError):
            yield Hit(
                (".wsforge", "manifest.json"), "manifest is not valid JSON", file=".wsforge/manifest.json"
            )
            return
        expected = sorted(files)
    else:
        expected = [f"src/{spec.package}/{name}" for name in EXPECTED_MODULES]
    for rel in expected:
        if not (project_dir / rel).exists():
            yield Hit(("files",), f"{rel} was generated but is missing", file=rel)


def deploy_config(spec: ArchitectureSpec, project_dir: Path) -> Iterator[Hit]:
    if not (project_dir / "Dockerfile").is_file() and not (project_dir / "deploy").is_dir():
        yield Hit(("scaling",), "neither Dockerfile nor deploy/ exists in the project", file="Dockerfile")


DRIFT_RULES: list[Rule] = [
    Rule(
        "WSF-DRF-001",
        Criterion.DRIFT,
        Severity.WARNING,
        "Setting default differs from the spec",
        why="wsforge.yaml is the documented contract (and what regenerate re-renders from). A "
        "default changed only in settings.py means the running limit is not the reviewed one, and "
        "the next regenerate silently reverts or conflicts with it.",
        fix="Change the value in wsforge.yaml and run wsforge regenerate, or revert settings.py.",
        check=settings_drift,
    ),
    Rule(
        "WSF-DRF-002",
        Criterion.DRIFT,
        Severity.WARNING,
        "Generated file deleted",
        why="A module of the last render is missing: the server may not start, or a safety check "
        "(auth, limits) is gone without the spec saying so.",
        fix="Restore it with wsforge regenerate, or record the removal by editing wsforge.yaml.",
        check=deleted_files,
    ),
    Rule(
        "WSF-SCL-009",
        Criterion.SCALE,
        Severity.WARNING,
        "No deploy configuration",
        why="A scale-out design needs a repeatable way to run N instances behind a balancer; "
        "without a Dockerfile or deploy/ the capacity plan exists only on paper.",
        fix="Restore Dockerfile and deploy/ with wsforge regenerate.",
        check=deploy_config,
    ),
]

DERIVATION_RULE = Rule(
    "WSF-DRF-003",
    Criterion.DRIFT,
    Severity.NOTE,
    "Spec differs from what the requirements imply",
    why="A fresh derivation from the spec's own requirements gives another value. Hand edits are "
    "allowed; this note makes sure they are deliberate (memory conventions are not reported).",
    fix="Keep the edit and record why (a memory convention), or restore the derived value.",
    check=lambda spec: iter(()),
    looks_at=DERIVED_KEYS,
)


def derivation_hits(spec: ArchitectureSpec) -> list[Hit] | None:
    """Hits for derived values that differ, or None when the decision engine is unavailable."""
    try:
        from ..architecture import design
    except ImportError:  # pragma: no cover - only before step 2 exists
        return None
    fresh = design(spec.requirements).model_dump(mode="json")
    current = spec.model_dump(mode="json")
    from_memory = [d.key for d in spec.decisions if d.source == Source.MEMORY]
    hits = []
    for key in DERIVED_KEYS:
        if any(key == m or key.startswith(m + ".") or m.startswith(key + ".") for m in from_memory):
            continue
        mine, theirs = _get(current, key), _get(fresh, key)
        if not _same(mine, theirs):
            hits.append(Hit(tuple(key.split(".")), f"{key} = {mine!r}, derived {theirs!r}"))
    return hits


def read_settings_defaults(source: str) -> dict[str, tuple[Any, int]]:
    """``{field: (default, line)}`` for the literal defaults of the ``Settings`` class.

    Only literals are read (numbers, strings, booleans, None, tuples/lists of those): a default
    computed at import time is not a value the spec could have rendered.
    """
    tree = ast.parse(source)
    defaults: dict[str, tuple[Any, int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
                    try:
                        defaults[stmt.target.id] = (ast.literal_eval(stmt.value), stmt.lineno)
                    except ValueError:
                        continue
    return defaults


DEMO_PAGE_ORIGINS = ("http://localhost:8765", "http://127.0.0.1:8765")
"""Appended to ``Settings.allowed_origins`` by ``settings.py.jinja``: the demo page the server
serves at ``/`` on its default port is allowed by listing its origin, never by matching ``Host``."""


def _spec_scalars(dumped: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for section in SETTINGS_SECTIONS:
        for leaf, value in (dumped.get(section) or {}).items():
            if value is None or isinstance(value, dict):
                continue
            yield f"{section}.{leaf}", value
    yield "allowed_origins", dumped.get("allowed_origins")
    yield "transport", dumped.get("transport")
    yield "scaling.broker_url", dumped["scaling"]["broker_url"]
    yield "protocol.path", dumped["protocol"]["path"]
    yield "channels.separator", dumped["channels"]["separator"]
    yield "channels.max_channel_name", dumped["channels"]["max_channel_name"]


SETTING_ALIASES = {
    "heartbeat.interval_s": ["ping_interval_s"],
    "heartbeat.timeout_s": ["ping_timeout_s"],
    "protocol.path": ["path"],
    "channels.separator": ["channel_separator"],
    "channels.max_channel_name": ["max_channel_name"],
}
"""Spec keys whose generated setting is not simply named ``<section>_<leaf>`` or ``<leaf>``."""


def _setting_names(key: str) -> list[str]:
    """Names a settings field for ``key`` may have, most specific first."""
    if key in SETTING_ALIASES:
        return SETTING_ALIASES[key]
    section, _, leaf = key.partition(".")
    if not leaf:
        return [section]
    names = [f"{section}_{leaf}"]
    if section == "auth":
        names.append(f"jwt_{leaf}")
    if section == "scaling" or section == "protocol":
        names.append(f"ws_{leaf}")
    if section == "limits" or "_" in leaf:
        names.append(leaf)
    return names


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
    return bool(a == b)


def _get(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
