"""Drift checks on a generated project: settings edited, files deleted, deploy config gone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.review.helpers import base_data, write_spec
from wsforge.review import review_spec
from wsforge.review.drift import read_settings_defaults
from wsforge.review.load import load_target

SETTINGS = '''"""Settings (rendered)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    max_payload_bytes: int = 8192
    rate_per_s: float = 10.0
    ping_interval_s: float = 15.0
    ping_timeout_s: float = 10.0
    allowed_origins: tuple[str, ...] = ("http://localhost:8000", "http://127.0.0.1:8000")
    broker_url: str = "memory://"
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A minimal rendered project: spec, settings, server module, Dockerfile and a manifest."""
    root = tmp_path / "chat-demo"
    package = root / "src" / "chat_demo"
    package.mkdir(parents=True)
    write_spec(root, base_data("chat"))
    (package / "settings.py").write_text(SETTINGS, encoding="utf-8")
    for name in ("protocol.py", "dispatch.py", "server.py", "auth.py", "limits.py"):
        (package / name).write_text('"""Module."""\n', encoding="utf-8")
    (root / "Dockerfile").write_text("FROM python:3.11-slim\n", encoding="utf-8")
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    (root / ".wsforge").mkdir()
    (root / ".wsforge" / "manifest.json").write_text(json.dumps({"files": files}), encoding="utf-8")
    return root


def _fired(project: Path) -> dict[str, list[tuple[str | None, int | None, str]]]:
    target = load_target(project)
    assert target.kind == "project"
    report = review_spec(
        target.spec, spec_path=target.spec_path, spec_lines=target.spec_lines, project_dir=project
    )
    out: dict[str, list[tuple[str | None, int | None, str]]] = {}
    for f in report.findings:
        if f.rule_id != "WSF-DRF-003":
            out.setdefault(f.rule_id, []).append((f.file, f.line, f.evidence))
    return out


def test_untouched_project_has_no_drift(project: Path) -> None:
    """A project whose settings match its spec and whose files all exist is clean."""
    assert _fired(project) == {}


def test_settings_default_changed_by_hand_is_drift(project: Path) -> None:
    """A limit edited in settings.py but not in wsforge.yaml is reported with file and line."""
    settings = project / "src" / "chat_demo" / "settings.py"
    settings.write_text(SETTINGS.replace("max_payload_bytes: int = 8192", "max_payload_bytes: int = 1048576"))
    fired = _fired(project)
    assert list(fired) == ["WSF-DRF-001"]
    [(file, line, evidence)] = fired["WSF-DRF-001"]
    assert file == "src/chat_demo/settings.py"
    assert line == 9
    assert "1048576" in evidence and "8192" in evidence


def test_origins_changed_in_settings_is_drift(project: Path) -> None:
    """Tuples in settings compare with lists in the spec, item by item."""
    settings = project / "src" / "chat_demo" / "settings.py"
    settings.write_text(SETTINGS.replace('"http://127.0.0.1:8000")', '"*")'))
    assert list(_fired(project)) == ["WSF-DRF-001"]


def test_deleted_generated_file_is_drift(project: Path) -> None:
    """A file listed in the manifest but gone is reported by path."""
    (project / "src" / "chat_demo" / "auth.py").unlink()
    assert (_fired(project)) == {
        "WSF-DRF-002": [("src/chat_demo/auth.py", None, "src/chat_demo/auth.py was generated but is missing")]
    }


def test_deleted_module_is_found_without_a_manifest(project: Path) -> None:
    """Without .wsforge/manifest.json the core modules are still checked."""
    (project / ".wsforge" / "manifest.json").unlink()
    (project / "src" / "chat_demo" / "limits.py").unlink()
    assert list(_fired(project)) == ["WSF-DRF-002"]


def test_missing_deploy_config_is_a_scale_finding(project: Path) -> None:
    """No Dockerfile and no deploy/ fires WSF-SCL-009 (and the manifest notices the deletion)."""
    (project / "Dockerfile").unlink()
    assert {"WSF-DRF-002", "WSF-SCL-009"} == set(_fired(project))


def test_settings_defaults_reader_takes_literals_only() -> None:
    """Computed defaults are skipped; literal ones come with their line."""
    source = "class Settings:\n    a: int = 3\n    b: float = compute()\n    c: tuple[str, ...] = ('x',)\n"
    assert read_settings_defaults(source) == {"a": (3, 2), "c": (("x",), 4)}


def test_demo_page_origins_rendered_into_settings_are_not_drift(project: Path) -> None:
    """The demo page's own origins are appended to the spec's allowlist by the template: no drift;
    any other extra origin still is."""
    settings = project / "src" / "chat_demo" / "settings.py"
    spec_origins = '("http://localhost:8000", "http://127.0.0.1:8000"'
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        text.replace(spec_origins, spec_origins + ', "http://localhost:8765", "http://127.0.0.1:8765"'),
        encoding="utf-8",
    )
    assert "WSF-DRF-001" not in _fired(project)
    settings.write_text(
        text.replace(spec_origins, spec_origins + ', "http://evil.example"'), encoding="utf-8"
    )
    assert "WSF-DRF-001" in _fired(project)
