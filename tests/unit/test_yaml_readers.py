"""The five readers of hand-edited YAML share one helper and say ``file:line: field: problem``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from wsforge.errors import UserError
from wsforge.memory import SKILL, YamlMemoryStore
from wsforge.requirements import load_requirements
from wsforge.review.load import load_target
from wsforge.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
CHAT = (REPO / "examples" / "chat.yaml").read_text()


def _spec_text() -> str:
    from wsforge.architecture import design
    from wsforge.spec import dump_spec

    return dump_spec(design(load_requirements(REPO / "examples" / "chat.yaml")))


def _memory(path: Path) -> object:
    return YamlMemoryStore(path.parent.parent).get_skill_memory(SKILL, "chat-demo")


READERS: dict[str, tuple[Callable[[Path], object], Callable[[], str], str, str]] = {
    # name: (reader, good text, line to append or replace, expected "field")
    "answers": (load_requirements, lambda: CHAT, "concurrent_connections: -5\n", "concurrent_connections"),
    "spec": (load_spec, _spec_text, "spec_version: nope\n", "spec_version"),
    "review target": (lambda p: load_target(p), _spec_text, "spec_version: nope\n", "spec_version"),
    "memory": (
        _memory,
        lambda: "schema_version: 1\nskill: websocket-engineer\nproject: chat-demo\n",
        "conventions:\n  serialization: xml\n",
        "conventions.serialization",
    ),
}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / SKILL / "chat-demo.yaml" if name == "memory" else tmp_path / "input.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_bad_value_is_reported_with_file_line_and_field(tmp_path: Path, name: str) -> None:
    """The message names the file, the line of the bad key and its dotted path."""
    reader, good, bad, field = READERS[name]
    text = good()
    key = bad.split(":")[0]
    kept = [line for line in text.splitlines(keepends=True) if not line.startswith(key + ":")]
    path = _write(tmp_path, name, "".join(kept) + bad)
    line = len(kept) + 1 + (1 if "\n  " in bad else 0)
    with pytest.raises(UserError) as caught:
        reader(path)
    assert f"{path}:{line}: {field}:" in str(caught.value)


@pytest.mark.parametrize("name", sorted(READERS))
def test_broken_yaml_is_reported_with_file_and_line(tmp_path: Path, name: str) -> None:
    """Malformed YAML names the file and the line, not a parser traceback."""
    reader, good, _bad, _field = READERS[name]
    text = good()
    path = _write(tmp_path, name, text + "oops: [unclosed\n")
    with pytest.raises(UserError, match=rf"^{path}:\d+: invalid YAML"):
        reader(path)


@pytest.mark.parametrize("name", ["spec", "memory"])
def test_a_document_that_is_not_a_mapping_is_refused(tmp_path: Path, name: str) -> None:
    """A list where a mapping belongs is one line: the file, line 1 and what was expected."""
    reader = READERS[name][0]
    path = _write(tmp_path, name, "- a\n- b\n")
    with pytest.raises(UserError, match=rf"^{path}:1: \w+ must be a mapping"):
        reader(path)
