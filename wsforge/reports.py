"""Step 5's documents: ``claudedocs/websocket_{component}_{project}.md``.

Rendered from ``templates/reports/*.md.jinja`` with the same deterministic Jinja setup as the
project templates, then written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from ._resources import templates_dir
from .config import AgentConfig
from .errors import TemplateError
from .memory import atomic_write_text
from .record import RunResult, need
from .render import jinja_environment, template_context
from .review.formats import to_markdown

COMPONENTS = ("architecture", "protocol", "server", "client")


def report_context(result: RunResult) -> dict[str, Any]:
    context = template_context(result.spec)
    memory = result.memory
    context["memory"] = {
        "greenfield": memory.greenfield,
        "path": str(memory.path) if memory.path else None,
        "conventions": memory.conventions.model_dump(mode="json", exclude_none=True),
        "known_issues": [k.model_dump(mode="json") for k in memory.known_issues],
    }
    context["files"] = sorted(result.files)
    context["checklist"] = [vars(r) for r in result.checklist]
    return context


def render_reports(result: RunResult) -> dict[str, str]:
    """``{file name: markdown}`` for the four design documents and the review report."""
    root = templates_dir() / "reports"
    env = jinja_environment(root)
    context = report_context(result)
    out: dict[str, str] = {}
    project = result.spec.project
    for component in COMPONENTS:
        name = f"{component}.md.jinja"
        try:
            out[f"websocket_{component}_{project}.md"] = env.get_template(name).render(context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"templates/reports/{name}: {exc}") from exc
    compliance = [{**record.as_memory(), "status": record.result} for record in result.checklist]
    out[f"websocket_review_{project}.md"] = to_markdown(
        need(result.review, "the review"), extra={"compliance": compliance}
    )
    return out


def write_reports(result: RunResult, config: AgentConfig) -> list[Path]:
    written = []
    for name, text in render_reports(result).items():
        path = Path(config.claudedocs_dir) / name
        atomic_write_text(path, text)
        written.append(path)
    return written
