"""wsforge's command line (typer). One module per command; ``_app`` maps errors to exit codes."""

from ._app import app, entrypoint, main

__all__ = ["app", "entrypoint", "main"]
