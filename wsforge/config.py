"""The tool's own configuration (``wsforge.toml`` or ``[tool.wsforge]``-free: a YAML file or env).

Described by ``schemas/agent_config.schema.json``. Paths are relative to the working directory,
which is where people expect ``memory/`` and ``claudedocs/`` to appear.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._yaml import read_mapping
from .errors import UserError

CONFIG_FILE = "wsforge.config.yaml"


class AgentConfig(BaseModel):
    """Where wsforge keeps memory and documents, and what it generates by default."""

    model_config = ConfigDict(extra="forbid")

    memory_dir: Path = Field(default=Path("memory"), description="Root of the YAML memory store.")
    claudedocs_dir: Path = Field(
        default=Path("claudedocs"), description="Where step 5 writes design documents."
    )
    skill: str = Field(default="websocket-engineer", description="Memory namespace of this tool.")
    default_stack: Literal["python-websockets"] = Field(
        default="python-websockets", description="Generated stack; the only one today."
    )


def load_config(cwd: Path) -> AgentConfig:
    """Read ``wsforge.config.yaml`` from ``cwd`` if present; env ``WSFORGE_MEMORY_DIR`` /
    ``WSFORGE_CLAUDEDOCS_DIR`` override it."""
    data: dict[str, object] = {}
    path = cwd / CONFIG_FILE
    if path.is_file():
        data.update(read_mapping(path, UserError, what="config", empty_ok=True)[0])
    if os.environ.get("WSFORGE_MEMORY_DIR"):
        data["memory_dir"] = os.environ["WSFORGE_MEMORY_DIR"]
    if os.environ.get("WSFORGE_CLAUDEDOCS_DIR"):
        data["claudedocs_dir"] = os.environ["WSFORGE_CLAUDEDOCS_DIR"]
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"{path}: {problems}") from exc
    return config.model_copy(
        update={
            "memory_dir": config.memory_dir if config.memory_dir.is_absolute() else cwd / config.memory_dir,
            "claudedocs_dir": config.claudedocs_dir
            if config.claudedocs_dir.is_absolute()
            else cwd / config.claudedocs_dir,
        }
    )
