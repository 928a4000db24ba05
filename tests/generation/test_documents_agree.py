"""After a memory edit and ``wsforge regenerate``, every document and the code tell one story.

Issue 20 item 10: with ``conventions.serialization: msgpack`` the protocol document and
``settings.py`` put msgpack first while the architecture document and the README still listed
json first, the README's namespaces row was a raw dict dump and its heartbeat row showed ``20.0``.
All of them are rendered from the one final spec; these tests read the rendered files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from wsforge.cli import main

from ..conftest import EXAMPLES


def _decision_cells(text: str) -> dict[str, str]:
    """``key -> value cell`` of a decisions table (rows ``| `key` | value | ...``)."""
    return {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\| `([a-z_.]+)` \| ([^|]*(?:\\\|[^|]*)*) \|", text, re.M)
    }


@pytest.fixture
def regenerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """chat rendered, then memory conventions edited by hand, then ``wsforge regenerate``."""
    monkeypatch.chdir(tmp_path)
    answers = EXAMPLES / "chat.yaml"
    project = tmp_path / "chat"
    assert main(["new", "--answers", str(answers), "--non-interactive", "--output", str(project)]) == 0
    memory = tmp_path / "memory" / "websocket-engineer" / "chat-demo.yaml"
    entry = yaml.safe_load(memory.read_text())
    entry["conventions"] = {
        "serialization": "msgpack",
        "heartbeat_interval_s": 20,
        "namespaces": [{"name": "room", "auth": "authenticated", "presence": True, "history_size": 50}],
    }
    memory.write_text(yaml.safe_dump(entry, sort_keys=False))
    assert main(["regenerate", str(project)]) == 0
    return project, tmp_path / "claudedocs"


def test_codec_order_is_the_same_in_code_and_every_document(regenerated: tuple[Path, Path]) -> None:
    project, docs = regenerated
    spec = yaml.safe_load((project / "wsforge.yaml").read_text())
    order = spec["protocol"]["subprotocols"]
    assert order[0] == "wsforge.v1.msgpack"
    settings = (project / "src" / "chat_demo" / "settings.py").read_text()
    assert settings.index("Codec.MSGPACK") < settings.index("Codec.JSON")
    readme = _decision_cells((project / "README.md").read_text())
    architecture = _decision_cells((docs / "websocket_architecture_chat-demo.md").read_text())
    assert readme["protocol.subprotocols"] == ", ".join(order)
    assert architecture["protocol.subprotocols"] == ", ".join(order)
    assert "codecs msgpack, json" in (docs / "websocket_architecture_chat-demo.md").read_text()


def test_readme_and_architecture_show_the_same_decision_values(regenerated: tuple[Path, Path]) -> None:
    project, docs = regenerated
    readme = _decision_cells((project / "README.md").read_text())
    architecture = _decision_cells((docs / "websocket_architecture_chat-demo.md").read_text())
    keys = {d["key"] for d in yaml.safe_load((project / "wsforge.yaml").read_text())["decisions"]}
    shared = readme.keys() & architecture.keys() & keys
    assert {"heartbeat", "channels.namespaces", "protocol.subprotocols"} <= shared
    assert {k: readme[k] for k in shared} == {k: architecture[k] for k in shared}
    assert readme["heartbeat"] == "interval_s=20, timeout_s=10"
    final = yaml.safe_load((project / "wsforge.yaml").read_text())["channels"]["namespaces"]
    assert readme["channels.namespaces"] == ", ".join(f"{ns['name']} ({ns['auth']})" for ns in final)
    raw = [v for k, v in readme.items() if k in keys and v.startswith(("{", "[{", '["'))]
    assert raw == [], "raw JSON dumps in the README's decisions table"
