"""Shared fixtures for wsforge's own suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory: memory/ and claudedocs/ land here, as for a user."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WSFORGE_MEMORY_DIR", raising=False)
    monkeypatch.delenv("WSFORGE_CLAUDEDOCS_DIR", raising=False)
    return tmp_path


@pytest.fixture
def chat_answers() -> Path:
    return EXAMPLES / "chat.yaml"
