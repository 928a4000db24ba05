"""One contract suite for every ``MemoryStore``: the YAML files and the in-memory twin.

The pipeline is handed a store; whichever it gets must behave the same, as the generated
projects' brokers pass one contract suite over memory, Redis and NATS.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from wsforge import memory as memory_module
from wsforge.errors import MemoryStoreError
from wsforge.memory import (
    SKILL,
    DictMemoryStore,
    MemoryStore,
    YamlMemoryStore,
)

STORES: dict[str, Callable[[Path], MemoryStore]] = {
    "yaml": YamlMemoryStore,
    "dict": lambda _path: DictMemoryStore(),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryStore:
    return STORES[request.param](tmp_path)


def test_an_unknown_project_is_greenfield(store: MemoryStore) -> None:
    """Reading a project nobody wrote gives an empty greenfield entry."""
    entry = store.get_skill_memory(SKILL, "demo")
    assert (entry.greenfield, entry.project, entry.conventions.model_dump(exclude_none=True)) == (
        True,
        "demo",
        {},
    )


def test_update_then_read_round_trips(store: MemoryStore) -> None:
    """What update wrote is what the next read returns, and the entry is no longer greenfield."""
    store.update(
        SKILL, "demo", {"conventions": {"serialization": "msgpack"}, "answers": {"project_name": "demo"}}
    )
    entry = store.get_skill_memory(SKILL, "demo")
    assert (entry.greenfield, entry.conventions.serialization, entry.answers) == (
        False,
        "msgpack",
        {"project_name": "demo"},
    )


def test_mappings_merge_one_level_deep(store: MemoryStore) -> None:
    """A second update of a mapping keeps the keys it does not name."""
    store.update(SKILL, "demo", {"conventions": {"serialization": "msgpack"}})
    store.update(SKILL, "demo", {"conventions": {"rate_per_s": 5}})
    conventions = store.get_skill_memory(SKILL, "demo").conventions
    assert (conventions.serialization, conventions.rate_per_s) == ("msgpack", 5)


def test_a_none_value_keeps_what_is_there(store: MemoryStore) -> None:
    """``None`` in a merged mapping leaves the stored value alone; a new key is stored as given."""
    store.update(SKILL, "demo", {"scaling": {"strategy": "single", "instances": 1}})
    store.update(SKILL, "demo", {"scaling": {"strategy": None, "instances": 2, "broker_url": None}})
    assert store.get_skill_memory(SKILL, "demo").scaling == {
        "strategy": "single",
        "instances": 2,
        "broker_url": None,
    }


def test_lists_and_scalars_are_replaced(store: MemoryStore) -> None:
    """Only mappings merge: a list given to update replaces the stored one."""
    store.update(
        SKILL, "demo", {"known_issues": [{"id": "K1", "summary": "a"}, {"id": "K2", "summary": "b"}]}
    )
    store.update(SKILL, "demo", {"known_issues": [{"id": "K3", "summary": "c"}]})
    assert [k.id for k in store.get_skill_memory(SKILL, "demo").known_issues] == ["K3"]


@pytest.mark.parametrize("section", ["history", "compliance"])
def test_logs_keep_only_their_newest_entries(
    store: MemoryStore, section: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """history and compliance are bounded (MAX_HISTORY_ENTRIES, MAX_LOG_ENTRIES); the oldest go first."""
    monkeypatch.setattr(memory_module, "MAX_HISTORY_ENTRIES", 4)
    monkeypatch.setattr(memory_module, "MAX_LOG_ENTRIES", 5)
    limit = 4 if section == "history" else 5
    for n in range(limit + 3):
        entry = (
            {"at": str(n), "event": "generated"}
            if section == "history"
            else {"step": 1, "name": "requirements", "at": str(n), "result": "ok"}
        )
        store.append(SKILL, "demo", entry, section=section)
    kept = getattr(store.get_skill_memory(SKILL, "demo"), section)
    assert [item.at for item in kept] == [str(n) for n in range(3, limit + 3)]


def test_other_sections_are_not_trimmed(store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Known issues are a person's list: appending never drops one."""
    monkeypatch.setattr(memory_module, "MAX_HISTORY_ENTRIES", 2)
    monkeypatch.setattr(memory_module, "MAX_LOG_ENTRIES", 2)
    for n in range(5):
        store.append(SKILL, "demo", {"id": f"K{n}", "summary": "s"}, section="known_issues")
    assert len(store.get_skill_memory(SKILL, "demo").known_issues) == 5


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x y"])
def test_unsafe_names_are_refused_by_every_call(store: MemoryStore, name: str) -> None:
    """A project (or skill) name that could leave the store's directory is refused, read or write."""
    with pytest.raises(MemoryStoreError, match="invalid project name"):
        store.get_skill_memory(SKILL, name)
    with pytest.raises(MemoryStoreError, match="invalid project name"):
        store.update(SKILL, name, {"answers": {}})
    with pytest.raises(MemoryStoreError, match="invalid project name"):
        store.append(SKILL, name, {"at": "t", "event": "generated"})
    with pytest.raises(MemoryStoreError, match="invalid skill name"):
        store.get_skill_memory(name, "demo")


def test_an_update_that_does_not_validate_is_refused_and_not_kept(store: MemoryStore) -> None:
    """A bad value raises MemoryStoreError naming the field, and the stored entry is unchanged."""
    store.update(SKILL, "demo", {"conventions": {"serialization": "json"}})
    with pytest.raises(MemoryStoreError, match=r"conventions\.serialization"):
        store.update(SKILL, "demo", {"conventions": {"serialization": "xml"}})
    assert store.get_skill_memory(SKILL, "demo").conventions.serialization == "json"


def test_appending_to_a_mapping_is_refused(store: MemoryStore) -> None:
    """append needs a list; a section that holds a mapping is an error, not silently replaced."""
    store.update(SKILL, "demo", {"scaling": {"instances": 1}})
    with pytest.raises(MemoryStoreError, match="must be a list"):
        store.append(SKILL, "demo", {"at": "t"}, section="scaling")


def test_read_entries_do_not_alias_the_store(store: MemoryStore) -> None:
    """Changing what a read or an update returned does not change what the store holds."""
    data = {"answers": {"project_name": "demo"}}
    store.update(SKILL, "demo", data)
    data["answers"]["project_name"] = "changed"
    store.get_skill_memory(SKILL, "demo").answers["project_name"] = "changed too"
    assert store.get_skill_memory(SKILL, "demo").answers == {"project_name": "demo"}
