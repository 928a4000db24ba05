"""Build flawed specs from the clean fixtures: copy a base, set a few keys, write wsforge.yaml."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "review"
CLEAN = FIXTURES / "clean"


def load_flaws() -> list[dict[str, Any]]:
    flaws = yaml.safe_load((FIXTURES / "flaws.yaml").read_text(encoding="utf-8"))
    assert isinstance(flaws, list)
    return flaws


def clean_bases() -> list[str]:
    return sorted(p.name.removesuffix(".wsforge.yaml") for p in CLEAN.glob("*.wsforge.yaml"))


def base_data(base: str) -> dict[str, Any]:
    data = yaml.safe_load((CLEAN / f"{base}.wsforge.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def apply(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with each dotted key set (``*`` sets every item of a list)."""
    out = copy.deepcopy(data)
    for dotted, value in changes.items():
        _set(out, dotted.split("."), value)
    return out


def _set(node: Any, parts: list[str], value: Any) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        targets = range(len(node)) if head == "*" else [int(head)]
        for index in targets:
            if rest:
                _set(node[index], rest, value)
            else:
                node[index] = value
        return
    if rest:
        _set(node.setdefault(head, {}), rest, value)
    else:
        node[head] = value


def write_spec(directory: Path, data: dict[str, Any], name: str = "wsforge.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
