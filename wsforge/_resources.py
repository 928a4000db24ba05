"""Finds ``templates/`` and ``schemas/`` in a checkout *and* in an installed wheel.

In the wheel they live under ``wsforge/_data/`` (pyproject's force-include); in a checkout they are
the repository's top-level folders. Looking in both places keeps one source of truth for each.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """The directory holding ``templates`` or ``schemas``."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"wsforge installation is missing its {name}/ directory")


def templates_dir() -> Path:
    return data_dir("templates")


def schemas_dir() -> Path:
    return data_dir("schemas")


def knowledge_file(domain: str) -> Path:
    return _PACKAGE_DIR / "knowledge" / f"{domain}.yaml"
