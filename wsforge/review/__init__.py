"""Step 5's review engine: rules over a spec (and a generated project), findings, report formats.

::

    report = review_spec(spec, spec_path=path, spec_lines=lines, project_dir=project)
    if report.failed(Severity.ERROR): ...
    print(to_markdown(report))

The same engine backs ``wsforge review``, step 5 of ``wsforge new`` and (for the report shape)
``wsforge probe``.
"""

from .engine import catalogue, review_spec
from .model import Check, Criterion, CriterionResult, Finding, ReviewReport, Rule, Severity
from .rules import RULES

__all__ = [
    "RULES",
    "Check",
    "Criterion",
    "CriterionResult",
    "Finding",
    "ReviewReport",
    "Rule",
    "Severity",
    "catalogue",
    "review_spec",
]
