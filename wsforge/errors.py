"""Every error wsforge raises on purpose.

::

    WsforgeError                    root, never raised bare
      UserError                     print one line to stderr, exit 1
        RequirementsError           bad answers file or wizard answer; names file, line, field
        MemoryStoreError            bad memory YAML; names file, line, field; file never overwritten
        SpecError                   bad wsforge.yaml
        TemplateError               a template needs a value the spec does not have
        TargetExistsError           output directory not empty and no --force
        InteractiveSessionRequired  no terminal and an answer is missing
      ReviewFailed                  findings at or above the fail level -> exit 3
    WsforgeWarning(Warning)         separate root for warnings

The CLI maps these to exit codes in one place (``cli.py``); steps raise and never exit.
"""

from __future__ import annotations


class WsforgeError(Exception):
    """Root of wsforge's own errors."""


class UserError(WsforgeError):
    """Something the user can fix; printed as one line, exit status 1."""


class RequirementsError(UserError, ValueError):
    """An answers file or answer that does not describe valid requirements."""


class MemoryStoreError(UserError):
    """A memory file that cannot be read or validated. It is never overwritten."""


class SpecError(UserError, ValueError):
    """A ``wsforge.yaml`` that cannot be read or validated."""


class TemplateError(UserError):
    """A template could not be rendered (names the template and the missing value)."""


class TargetExistsError(UserError):
    """The output directory holds files and ``--force`` was not given."""


class InteractiveSessionRequired(UserError):
    """An answer is missing and there is no terminal to ask on."""


class ReviewFailed(WsforgeError):
    """A review or probe found problems at or above the chosen severity; exit status 3."""

    def __init__(self, message: str, findings: int) -> None:
        super().__init__(message)
        self.findings = findings


class WsforgeWarning(Warning):
    """Root of wsforge's warnings."""
