"""The one pipeline: steps in dependency order, collaborators passed in, three writers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wsforge import workflow
from wsforge.config import AgentConfig
from wsforge.context import PackagedContextProvider
from wsforge.errors import WsforgeError
from wsforge.memory import SKILL, DictMemoryStore
from wsforge.record import Run
from wsforge.requirements import load_requirements
from wsforge.update.run import run_regenerate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class CountingContext:
    """A ContextProvider that hands out the packaged index and counts the requests."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._index = PackagedContextProvider().get_index("websocket")

    def get_index(self, domain: str) -> dict[str, Any]:
        self.calls.append(domain)
        return self._index


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    return AgentConfig(memory_dir=tmp_path / "memory", claudedocs_dir=tmp_path / "docs")


def _new(tmp_path: Path, store: DictMemoryStore, config: AgentConfig, **kwargs: Any) -> workflow.RunResult:
    return workflow.run_new(
        load_requirements(EXAMPLES / "chat.yaml"),
        store=store,
        context=kwargs.pop("context", CountingContext()),
        config=config,
        target=tmp_path / "chat-demo",
        **kwargs,
    )


def test_memory_is_read_before_the_design_which_runs_once(
    tmp_path: Path, config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps run 1, 3, 2, 4, 5; design is called once, with the memory entry, and asks the context once."""
    store = DictMemoryStore()
    store.update(SKILL, "chat-demo", {"conventions": {"serialization": "msgpack"}})
    seen: list[Any] = []
    from wsforge.architecture import design as real_design

    def counting_design(*args: Any) -> Any:
        seen.append(args[1])
        return real_design(*args)

    monkeypatch.setattr(workflow, "design", counting_design)
    context = CountingContext()
    result = _new(tmp_path, store, config, context=context, dry_run=True)
    assert [(r.step, r.name) for r in result.checklist] == [
        (1, "requirements"),
        (3, "memory"),
        (2, "architecture"),
        (4, "implement"),
        (5, "review"),
    ]
    assert [m.conventions.serialization for m in seen] == ["msgpack"]
    assert context.calls == ["websocket"]
    assert result.spec.protocol.codecs[0].value == "msgpack"
    assert "1 convention(s) applied (serialization)" in result.checklist[2].detail


def test_dry_run_writes_nothing_and_remembers_nothing(tmp_path: Path, config: AgentConfig) -> None:
    """The dry-run writer plans in memory: no project, no documents, no memory entry."""
    store = DictMemoryStore()
    result = _new(tmp_path, store, config, dry_run=True)
    assert (result.wrote, result.documents, list(tmp_path.iterdir())) == (False, [], [])
    assert result.checklist[3].detail.startswith("planned ")
    assert store.get_skill_memory(SKILL, "chat-demo").greenfield


def test_fresh_then_merge_with_nothing_new_writes_nothing(tmp_path: Path, config: AgentConfig) -> None:
    """The fresh writer writes and remembers; the merge writer over it then finds nothing to write."""
    store = DictMemoryStore()
    fresh = _new(tmp_path, store, config)
    assert fresh.wrote and (fresh.target / "wsforge.yaml").is_file() and len(fresh.documents) == 5
    assert [r.step for r in store.get_skill_memory(SKILL, "chat-demo").compliance] == [1, 3, 2, 4, 5]
    manifest = (fresh.target / ".wsforge" / "manifest.json").stat().st_mtime_ns

    again = run_regenerate(fresh.target, store=store, context=CountingContext(), config=config)
    assert (again.wrote, again.counts) == (False, {"unchanged": len(fresh.files)})
    assert again.checklist[3].detail.startswith("nothing to write in ")
    assert (fresh.target / ".wsforge" / "manifest.json").stat().st_mtime_ns == manifest

    planned = run_regenerate(
        fresh.target, store=store, context=CountingContext(), config=config, dry_run=True
    )
    assert (planned.wrote, planned.checklist[3].detail.split(" ")[0]) == (False, "planned")


def test_a_step_refuses_to_run_before_its_inputs_exist(tmp_path: Path) -> None:
    """The checklist checks each step's inputs: design without memory is refused and recorded."""
    pipeline = workflow.Pipeline(
        answers=lambda _run: load_requirements(EXAMPLES / "chat.yaml"),
        answers_detail="test",
        store=DictMemoryStore(),
        context=CountingContext(),
        config=AgentConfig(),
        writer=workflow.DryRunWriter(workflow.FreshWriter()),
    )
    architecture = next(step for step in pipeline.steps() if step.number == 2)
    with pytest.raises(WsforgeError, match="memory"):
        workflow.Checklist().run(architecture, Run(None, None, None, {}, tmp_path))
