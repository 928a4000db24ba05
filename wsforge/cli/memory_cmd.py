"""``wsforge memory show|path|validate NAME``: for people who edit memory by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import load_config
from ..memory import YamlMemoryStore
from ._app import app, stdout

memory_app = typer.Typer(
    help="Inspect and validate the YAML memory wsforge keeps per project.", no_args_is_help=True
)
app.add_typer(memory_app, name="memory")


def _store() -> tuple[YamlMemoryStore, str]:
    config = load_config(Path.cwd())
    return YamlMemoryStore(config.memory_dir), config.skill


@memory_app.command("path")
def memory_path(project: Annotated[str, typer.Argument(help="Project name.")]) -> None:
    """Print where the project's memory file lives (whether or not it exists yet)."""
    store, skill = _store()
    stdout.print(str(store.path(skill, project)), highlight=False, soft_wrap=True)


@memory_app.command("show")
def memory_show(project: Annotated[str, typer.Argument(help="Project name.")]) -> None:
    """Print the project's memory file, or say that the project is greenfield."""
    store, skill = _store()
    entry = store.get_skill_memory(skill, project)
    if entry.greenfield:
        stdout.print(f"{project}: greenfield (no memory at {entry.path})", highlight=False)
        return
    assert entry.path is not None
    stdout.print(entry.path.read_text(encoding="utf-8"), highlight=False, markup=False, end="")


@memory_app.command("validate")
def memory_validate(
    project: Annotated[str, typer.Argument(help="Project name, or a path to a memory YAML file.")],
) -> None:
    """Check a hand-edited memory file; exit 1 naming file, line and field on a problem."""
    store, skill = _store()
    candidate = Path(project)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        entry = store.validate_file(candidate)
        where = candidate
    else:
        entry = store.get_skill_memory(skill, project)
        where = entry.path or store.path(skill, project)
        if entry.greenfield:
            stdout.print(f"{project}: greenfield (no memory at {where})", highlight=False)
            return
    conv = entry.conventions.model_dump(exclude_none=True)
    stdout.print(
        f"{where}: valid ({len(conv)} convention(s), {len(entry.known_issues)} known issue(s))",
        highlight=False,
    )
