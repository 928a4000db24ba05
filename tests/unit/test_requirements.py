"""Step 1: answers files become validated requirements, or one precise error."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsforge.errors import RequirementsError
from wsforge.requirements import Requirements, load_requirements

from ..conftest import EXAMPLES


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_is_valid(path: Path) -> None:
    """Every shipped example validates."""
    req = load_requirements(path)
    assert isinstance(req, Requirements)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "answers.yaml"
    path.write_text(text)
    return path


def _chat_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (EXAMPLES / "chat.yaml").read_text()
    assert old in text
    return _write(tmp_path, text.replace(old, new))


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    """A YAML syntax error names the file and the line."""
    path = _write(tmp_path, "project_name: a\nuse_cases: [chat\nfoo: 1\n")
    with pytest.raises(RequirementsError) as err:
        load_requirements(path)
    assert str(path) in str(err.value)
    assert "invalid YAML" in str(err.value)
    assert f"{path}:3" in str(err.value) or f"{path}:2" in str(err.value)


def test_repeated_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    """YAML parsers keep the last of two equal keys; the answers file gets an error with both lines."""
    path = _write(tmp_path, "project_name: a\nuse_cases: [chat]\nproject_name: b\n")
    with pytest.raises(RequirementsError) as err:
        load_requirements(path)
    assert f"{path}:3" in str(err.value)
    assert "duplicate key 'project_name' (first at line 1)" in str(err.value)


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    """A misspelt key is reported as unknown, with its line."""
    path = _chat_with(tmp_path, "durability: replay", "durabilty: replay")
    with pytest.raises(RequirementsError) as err:
        load_requirements(path)
    message = str(err.value)
    assert "durabilty: unknown key" in message
    assert f"{path}:10:" in message


def test_wrong_type_names_field(tmp_path: Path) -> None:
    """A word where a number belongs names the field and its line."""
    path = _chat_with(tmp_path, "concurrent_connections: 5000", "concurrent_connections: lots")
    with pytest.raises(RequirementsError, match=r"answers.yaml:5: concurrent_connections: "):
        load_requirements(path)


def test_out_of_range_number_is_refused(tmp_path: Path) -> None:
    """Zero connections is out of range."""
    path = _chat_with(tmp_path, "concurrent_connections: 5000", "concurrent_connections: 0")
    with pytest.raises(RequirementsError, match="greater than or equal to 1"):
        load_requirements(path)


def test_invalid_project_name(tmp_path: Path) -> None:
    """A project name that cannot be a package name is refused."""
    path = _chat_with(tmp_path, "project_name: chat-demo", "project_name: Chat Demo!")
    with pytest.raises(RequirementsError, match="project_name"):
        load_requirements(path)


def test_keyword_project_name(tmp_path: Path) -> None:
    """A Python keyword is not a package name."""
    path = _chat_with(tmp_path, "project_name: chat-demo", "project_name: import")
    with pytest.raises(RequirementsError, match="project_name"):
        load_requirements(path)


def test_bad_enum_value(tmp_path: Path) -> None:
    """An unknown use case lists the field."""
    path = _chat_with(tmp_path, "use_cases: [chat]", "use_cases: [chatting]")
    with pytest.raises(RequirementsError, match=r"use_cases\.0"):
        load_requirements(path)


def test_unknown_publisher_names_file_line_and_field(tmp_path: Path) -> None:
    """``publishers`` takes browser / mobile / backend / device; anything else is refused where it is."""
    path = _chat_with(tmp_path, "auth: jwt", "auth: jwt\npublishers: [backend, cron]")
    with pytest.raises(RequirementsError) as err:
        load_requirements(path)
    line = path.read_text().splitlines().index("publishers: [backend, cron]") + 1
    assert f"{path}:{line}: publishers.1" in str(err.value)


def test_publishers_are_optional_and_derived() -> None:
    """Omitted, ``publishers`` follows the other answers; given, it is taken as it is."""
    from wsforge.requirements import PublisherRole, derive_publishers

    chat = load_requirements(EXAMPLES / "chat.yaml")
    assert chat.publishers is None and chat.publishers_derived
    assert chat.publisher_roles == [PublisherRole.BROWSER, PublisherRole.MOBILE]
    ticker = load_requirements(EXAMPLES / "public-ticker.yaml")
    assert ticker.publishers == [PublisherRole.BACKEND] and not ticker.publishers_derived
    assert derive_publishers(["server_push"], ["custom"], ["browser"]) == [PublisherRole.BACKEND]
    assert derive_publishers(["bidirectional"], ["iot"], ["iot"]) == [
        PublisherRole.BACKEND,
        PublisherRole.DEVICE,
    ]
    assert derive_publishers(["bidirectional"], ["gaming"], ["browser", "server"]) == [
        PublisherRole.BROWSER,
        PublisherRole.BACKEND,
    ]


def test_bad_origin(tmp_path: Path) -> None:
    """An origin must look like scheme://host."""
    path = _chat_with(tmp_path, '"http://localhost:8000", ', '"localhost", ')
    with pytest.raises(RequirementsError, match="allowed_origins"):
        load_requirements(path)


def test_not_a_mapping(tmp_path: Path) -> None:
    """A list at the top level is refused with line 1."""
    path = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(RequirementsError, match=":1: answers file must be a mapping"):
        load_requirements(path)


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is a user error, not a traceback."""
    with pytest.raises(RequirementsError, match="cannot read"):
        load_requirements(tmp_path / "nope.yaml")


def test_json_answers_are_accepted(tmp_path: Path) -> None:
    """JSON is YAML: answers files may be JSON."""
    import json

    import yaml

    data = yaml.safe_load((EXAMPLES / "chat.yaml").read_text())
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(data))
    assert load_requirements(path).project_name == "chat-demo"
