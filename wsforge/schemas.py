"""JSON Schemas exported from the pydantic models (``python -m wsforge.schemas`` rewrites them).

A test keeps ``schemas/*.json`` equal to :func:`model_schemas`, so editors that validate
answers files, memory YAML or ``wsforge.yaml`` against them see what wsforge itself accepts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ._resources import schemas_dir
from .config import AgentConfig
from .memory import MemoryEntry
from .requirements import Requirements
from .spec import ArchitectureSpec

MODELS: dict[str, type[BaseModel]] = {
    "requirements.schema.json": Requirements,
    "architecture_spec.schema.json": ArchitectureSpec,
    "memory_entry.schema.json": MemoryEntry,
    "agent_config.schema.json": AgentConfig,
}


def model_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema()
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://wsforge.dev/schemas/{name}",
            **schema,
        }
        out[name] = schema
    return out


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(target: Path | None = None) -> list[Path]:
    target = target or schemas_dir()
    written = []
    for name, schema in model_schemas().items():
        path = target / name
        path.write_text(dump(schema), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover
    for p in write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(p)
