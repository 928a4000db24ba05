"""Step 4 behaviour: deterministic, atomic, complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wsforge._resources import templates_dir
from wsforge.architecture import design
from wsforge.errors import TargetExistsError, TemplateError
from wsforge.memory import Conventions, MemoryEntry
from wsforge.render import plan_files, render_project, write_project
from wsforge.requirements import Requirements
from wsforge.spec import ArchitectureSpec

from .matrix import CASES, Case, case_answers


def _spec(case: Case) -> ArchitectureSpec:
    req = Requirements.model_validate(case_answers(case))
    memory = MemoryEntry(project=req.project_name, conventions=Conventions.model_validate(case.conventions))
    return design(req, memory if case.conventions else None)


def test_render_is_deterministic() -> None:
    """Rendering twice gives byte-identical files."""
    spec = _spec(CASES[0])
    assert render_project(spec) == render_project(spec)


def test_every_template_is_used_by_some_case() -> None:
    """No dead templates: each file under templates/project is rendered by a matrix case."""
    root = templates_dir() / "project"
    used: set[str] = set()
    for case in CASES:
        used |= {p.template for p in plan_files(_spec(case))}
    all_templates = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and not {"__pycache__", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache"} & set(p.parts)
    }
    assert all_templates - used == set()


def test_write_is_atomic_into_fresh_target(tmp_path: Path) -> None:
    """A fresh target appears whole; no staging directories are left behind."""
    spec = _spec(CASES[0])
    files = render_project(spec)
    target = tmp_path / "proj"
    write_project(files, target, spec)
    assert (target / "wsforge.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]


def test_write_refuses_non_empty_target(tmp_path: Path) -> None:
    """Without force an existing project is untouched."""
    spec = _spec(CASES[0])
    target = tmp_path / "proj"
    target.mkdir()
    (target / "x").write_text("mine")
    with pytest.raises(TargetExistsError):
        write_project(render_project(spec), target, spec)
    assert [p.name for p in target.iterdir()] == ["x"]


def test_missing_template_value_names_template(tmp_path: Path) -> None:
    """StrictUndefined: a template that needs an unknown value fails with its name."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "broken.txt.jinja").write_text("{{ spec.no_such_field }}\n")
    with pytest.raises(TemplateError, match=r"broken\.txt\.jinja.*no_such_field"):
        render_project(_spec(CASES[0]), root)


def test_package_segment_is_renamed() -> None:
    """templates' __package__ directory becomes the project's package."""
    paths = {p.path for p in plan_files(_spec(CASES[0]))}
    assert "src/chat_demo/protocol.py" in paths
    assert not any("__package__" in p for p in paths)


def _all_rendered() -> list[tuple[str, dict[str, bytes]]]:
    return [(case.name, render_project(_spec(case))) for case in CASES]


def test_documented_development_secrets_are_long_enough_for_hs256() -> None:
    """Every ``<secret env>=value`` a generated file shows is 32+ bytes (RFC 7518 3.2; PyJWT warns
    ``InsecureKeyLengthWarning`` on every token below that)."""
    short = []
    for name, files in _all_rendered():
        for path, content in files.items():
            for value in re.findall(r"\bWS_JWT_SECRET=([A-Za-z0-9_.-]+)", content.decode(errors="replace")):
                if re.search(r"[A-Za-z0-9]", value) and len(value.encode()) < 32:  # "..." is a placeholder
                    short.append((name, path, value))
    assert short == []


def test_no_generated_file_links_a_package_page_this_project_does_not_own() -> None:
    hits = [
        (name, path)
        for name, files in _all_rendered()
        for path, content in files.items()
        if b"pypi.org/project/wsforge" in content
    ]
    assert hits == []


def test_settings_has_no_empty_comment_for_a_namespace_without_description() -> None:
    """A namespace from memory conventions without a description gets no bare ``#`` line."""
    case = next(c for c in CASES if c.name == "chat-nopresence-nohistory")
    files = render_project(_spec(case))
    [settings] = [content.decode() for path, content in files.items() if path.endswith("/settings.py")]
    assert [line for line in settings.splitlines() if line.strip() == "#"] == []


def _case_files(name: str) -> dict[str, str]:
    case = next(c for c in CASES if c.name == name)
    return {path: content.decode() for path, content in render_project(_spec(case)).items()}


@pytest.mark.parametrize("name", ["notifications", "public-ticker", "notifications-nats"])
def test_readme_publishes_from_the_backend_with_one_curl(name: str) -> None:
    """Issue 22: the quickstart turns the API on; one curl from the README publishes to a closed namespace."""
    files = _case_files(name)
    readme = files["README.md"]
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "WS_API_KEYS=dev-api-key-change-me " in quickstart
    section = readme.split("## Publish from your backend", 1)[1].split("\n## ", 1)[0]
    port = "8876" if name == "notifications-nats" else "8766"
    assert f'curl -sS -X POST http://127.0.0.1:{port}/api/publish -H "X-API-Key: $KEY"' in section
    assert "KEY=dev-api-key-change-me" in section
    channel = "feed:lobby" if name == "public-ticker" else "user:alice"
    assert f'"channel":"{channel}"' in section
    assert "broker_unavailable" in section and "never a silent 200" in section
    for variable in ("WS_API_HOST", "WS_API_PORT", "WS_API_KEYS", "WS_API_URL"):
        assert f"| `{variable}` |" in readme, variable
        assert variable in files[".env.example"], variable


def test_api_port_is_never_published_nor_proxied() -> None:
    """Compose exposes the API port on its own network only; nginx answers /api/ with 404."""
    import yaml

    files = _case_files("notifications")
    compose = yaml.safe_load(files["deploy/docker-compose.yml"])
    app = compose["x-app"]
    assert "8766" in app["expose"] and "ports" not in app
    assert app["environment"]["WS_API_KEYS"] == "${WS_API_KEYS:-}"
    assert all("8766" not in str(service.get("ports", "")) for service in compose["services"].values())
    nginx = files["deploy/nginx.conf"]
    assert "location /api/ {\n            return 404;" in nginx
    assert ":8766" not in nginx
    assert "The server API stays inside" in files["deploy/README.md"]


def test_projects_without_the_api_document_none() -> None:
    files = _case_files("chat-msgpack")
    assert "## Publish from your backend" not in files["README.md"]
    assert "| `WS_API_KEYS` |" not in files["README.md"]  # the decisions table still says why it is off
    assert "WS_API_KEYS" not in files[".env.example"] + files["deploy/docker-compose.yml"]
    assert "/api/" not in files["deploy/nginx.conf"]


def test_hook_variables_are_documented_where_hooks_are_on() -> None:
    files = _case_files("chat-nopresence-nohistory")
    for name in ("CONNECT", "SUBSCRIBE", "PUBLISH", "DISCONNECT"):
        variable = f"WS_HOOK_{name}_URL"
        assert variable in files["README.md"] and variable in files[".env.example"], variable
        assert variable in files["deploy/docker-compose.yml"], variable
