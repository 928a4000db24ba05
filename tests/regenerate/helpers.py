"""Shared steps for the regenerate tests: generate a project, edit it like a person, snapshot it."""

from __future__ import annotations

import re
from pathlib import Path

from wsforge.cli import main
from wsforge.memory import SKILL

from ..conftest import EXAMPLES

PROJECT = "chat-demo"
PACKAGE = "chat_demo"
SETTINGS = f"src/{PACKAGE}/settings.py"


def generate(workdir: Path) -> Path:
    """`wsforge new` for the chat example in ``workdir``; returns the project directory."""
    assert main(["new", "--answers", str(EXAMPLES / "chat.yaml"), "--non-interactive"]) == 0
    return workdir / PROJECT


def regenerate(project: Path, *args: str) -> int:
    return main(["regenerate", str(project), *args])


def memory_file(workdir: Path) -> Path:
    return workdir / "memory" / SKILL / f"{PROJECT}.yaml"


def add_conventions(workdir: Path, text: str) -> None:
    """Append a ``conventions:`` block to the memory file, as a person would."""
    path = memory_file(workdir)
    path.write_text(path.read_text() + "conventions:\n" + text)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def payload_line(project: Path) -> str:
    """The ``max_payload_bytes`` default line of the generated settings."""
    match = re.search(r"^\s*max_payload_bytes: int = .*$", (project / SETTINGS).read_text(), re.M)
    assert match, "settings.py has no max_payload_bytes default"
    return match.group(0)


def snapshot(*roots: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``roots`` with its bytes and mtime (ns): equal snapshots = nothing touched."""
    out = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file():
                out[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out
