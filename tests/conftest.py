"""Shared fixtures for wsforge's own suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
RENDER_MATRIX = "tests/generation/test_render_matrix.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The render matrix first: by far the longest file, it starts at once on one pytest-xdist
    worker (``--dist loadfile --no-loadscope-reorder``) while the others take the rest."""
    items.sort(key=lambda item: not item.nodeid.startswith(RENDER_MATRIX))


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
