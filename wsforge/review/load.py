"""What ``wsforge review PATH`` reviews: a spec file, a generated project, or an answers file.

An answers file holds requirements only; the spec is re-derived with the same decision engine
``wsforge new`` uses, so reviewing answers shows what a generation from them would be flagged for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._yaml import Lines, load_model, load_yaml_with_lines, read_input_text
from ..errors import SpecError, UserError
from ..memory import MemoryEntry
from ..spec import ArchitectureSpec

SPEC_FILE = "wsforge.yaml"
ANSWER_FOR_SPEC_KEY = {
    "allowed_origins": "allowed_origins",
    "auth": "auth",
    "protocol": "serialization",
    "channels": "use_cases",
    "scaling": "concurrent_connections",
}
"""Spec sections derived from one answer: a finding on them points at that answer's line."""


@dataclass(frozen=True, slots=True)
class ReviewTarget:
    spec: ArchitectureSpec
    spec_path: Path
    spec_lines: dict[tuple[str, ...], int]
    project_dir: Path | None
    kind: str
    """``spec``, ``project`` or ``answers``."""


def load_target(
    path: Path, memory_for: Callable[[str], MemoryEntry | None] = lambda project: None
) -> ReviewTarget:
    """Resolve ``path`` into a spec with line numbers.

    Args:
        memory_for: returns the project's memory; used to re-derive a spec from answers the way
            ``wsforge new`` would (conventions applied).

    Raises:
        UserError: ``path`` does not exist or holds neither a spec nor answers.
        SpecError, RequirementsError: the file is invalid (file, line and field named).
    """
    if path.is_dir():
        spec_path = path / SPEC_FILE
        if not spec_path.is_file():
            raise UserError(f"{path}: no {SPEC_FILE} here; pass a wsforge.yaml, a project or an answers file")
        spec, lines = _load_spec(spec_path)
        return ReviewTarget(spec, spec_path, lines, path, "project")
    if not path.is_file():
        raise UserError(f"{path}: no such file or directory")
    try:
        data, lines = load_yaml_with_lines(read_input_text(path, "review input", SpecError))
    except SpecError:
        raise
    except ValueError as exc:
        raise SpecError(f"{path}:{exc}") from exc
    if isinstance(data, dict) and "requirements" in data and "protocol" in data:
        spec, lines = _load_spec(path)
        return ReviewTarget(spec, path, lines, None, "spec")
    from ..architecture import design
    from ..requirements import load_requirements

    requirements = load_requirements(path)  # reads it as answers: that reader's checks and messages
    spec = design(requirements, memory_for(requirements.project_name))
    mapped = {("requirements", *key): line for key, line in lines.items()}
    for section, answer in ANSWER_FOR_SPEC_KEY.items():
        if (answer,) in lines:
            mapped[(section,)] = lines[(answer,)]
    if section_items := [k for k in lines if k[0] == "allowed_origins" and len(k) == 2]:
        mapped.update({key: lines[key] for key in section_items})
    return ReviewTarget(spec, path, mapped, None, "answers")


def _load_spec(path: Path) -> tuple[ArchitectureSpec, Lines]:
    return load_model(path, ArchitectureSpec, SpecError, what="spec")
