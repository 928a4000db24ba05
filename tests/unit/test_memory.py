"""Step 3: the YAML memory store people edit by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsforge.errors import MemoryStoreError
from wsforge.memory import SKILL, DictMemoryStore, YamlMemoryStore


def test_missing_file_is_greenfield(tmp_path: Path) -> None:
    """No file means greenfield, and nothing is created by reading."""
    store = YamlMemoryStore(tmp_path)
    entry = store.get_skill_memory(SKILL, "demo")
    assert entry.greenfield
    assert not (tmp_path / SKILL / "demo.yaml").exists()


def test_update_then_read_round_trip(tmp_path: Path) -> None:
    """What update writes, get_skill_memory reads back."""
    store = YamlMemoryStore(tmp_path)
    store.update(SKILL, "demo", {"conventions": {"serialization": "msgpack"}, "scaling": {"instances": 2}})
    entry = store.get_skill_memory(SKILL, "demo")
    assert not entry.greenfield
    assert entry.conventions.serialization == "msgpack"
    assert entry.scaling == {"instances": 2}


def test_append_adds_to_a_list(tmp_path: Path) -> None:
    """append adds one record to the named section."""
    store = YamlMemoryStore(tmp_path)
    store.append(
        SKILL, "demo", {"step": 1, "name": "requirements", "at": "t", "result": "ok"}, section="compliance"
    )
    store.append(
        SKILL, "demo", {"step": 2, "name": "architecture", "at": "t", "result": "ok"}, section="compliance"
    )
    assert [c.step for c in store.get_skill_memory(SKILL, "demo").compliance] == [1, 2]


def test_hand_edits_and_comments_survive_an_update(tmp_path: Path) -> None:
    """A person's comments and keys survive the tool's next write."""
    store = YamlMemoryStore(tmp_path)
    store.update(SKILL, "demo", {"scaling": {"instances": 1}})
    path = store.path(SKILL, "demo")
    path.write_text(
        path.read_text()
        + "# our convention, agreed 2026-11\nconventions:\n  channel_separator: '.'  # matches NATS\n"
    )
    store.update(SKILL, "demo", {"scaling": {"instances": 3}})
    text = path.read_text()
    assert "# our convention, agreed 2026-11" in text
    assert "# matches NATS" in text
    assert store.get_skill_memory(SKILL, "demo").conventions.channel_separator == "."


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("project: demo\nskill: websocket-engineer\nconventions: [oops\n", ":4: invalid YAML"),
        (
            "project: demo\nskill: websocket-engineer\nconventions:\n  serialisation: json\n",
            ":4: conventions.serialisation: unknown key",
        ),
        (
            "project: demo\nskill: websocket-engineer\nconventions:\n  max_payload_bytes: tiny\n",
            ":4: conventions.max_payload_bytes",
        ),
        (
            "project: demo\nskill: websocket-engineer\nconventions:\n  rate_per_s: -1\n",
            ":4: conventions.rate_per_s",
        ),
        (
            "project: demo\nskill: websocket-engineer\nconventions:\n  publisher: kafka\n",
            ":4: conventions.publisher",
        ),
        (
            "project: demo\nskill: websocket-engineer\nconventions:\n  hooks: [connect, login]\n",
            ":4: conventions.hooks.1",
        ),
        (
            "project: demo\nskill: websocket-engineer\nconventions:\n  server_api: maybe\n",
            ":4: conventions.server_api",
        ),
        (
            "project: demo\nskill: websocket-engineer\nconventions:\n  api_port: 70000\n",
            ":4: conventions.api_port",
        ),
        (
            "project: demo\nskill: websocket-engineer\nconventions:\n  namespaces:\n"
            "    - {name: ticket, auth: hook}\n  hooks: [connect]\n",
            ":6: conventions.hooks: namespace(s) ticket have auth 'hook'",
        ),
        ("- just a list\n", ":1: memory must be a mapping"),
        (
            "project: demo\nskill: websocket-engineer\nconventions:\nconventions:\n  serialization: msgpack\n",
            ":4: duplicate key 'conventions' (first at line 3)",
        ),
    ],
)
def test_broken_memory_is_reported_and_never_overwritten(tmp_path: Path, content: str, expected: str) -> None:
    """A hand-edit that breaks the file gives file:line: field, and update leaves the bytes alone."""
    store = YamlMemoryStore(tmp_path)
    path = store.path(SKILL, "demo")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(MemoryStoreError) as err:
        store.get_skill_memory(SKILL, "demo")
    assert f"{path}{expected}" in str(err.value)
    with pytest.raises(MemoryStoreError):
        store.update(SKILL, "demo", {"scaling": {"instances": 9}})
    with pytest.raises(MemoryStoreError):
        store.append(SKILL, "demo", {"at": "t", "event": "x"})
    assert path.read_text() == content


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    """Only the memory file is left in the directory after writes."""
    store = YamlMemoryStore(tmp_path)
    for i in range(3):
        store.update(SKILL, "demo", {"scaling": {"instances": i + 1}})
    assert sorted(p.name for p in (tmp_path / SKILL).iterdir()) == ["demo.yaml"]


def test_file_for_another_project_is_refused(tmp_path: Path) -> None:
    """A copied file whose project does not match is an error, not silently used."""
    store = YamlMemoryStore(tmp_path)
    store.update(SKILL, "one", {})
    path = store.path(SKILL, "two")
    path.write_text(store.path(SKILL, "one").read_text())
    with pytest.raises(MemoryStoreError, match="holds skill"):
        store.get_skill_memory(SKILL, "two")


def test_unsafe_project_name_is_refused(tmp_path: Path) -> None:
    """A project name cannot walk out of the memory directory."""
    with pytest.raises(MemoryStoreError):
        YamlMemoryStore(tmp_path).get_skill_memory(SKILL, "../etc")


def test_dict_store_has_same_contract() -> None:
    """The in-memory store behaves like the YAML one."""
    store = DictMemoryStore()
    assert store.get_skill_memory(SKILL, "demo").greenfield
    store.update(SKILL, "demo", {"conventions": {"serialization": "json"}})
    store.append(SKILL, "demo", {"at": "t", "event": "generated"})
    entry = store.get_skill_memory(SKILL, "demo")
    assert entry.conventions.serialization == "json"
    assert entry.history[0].event == "generated"
