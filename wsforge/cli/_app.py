"""The typer application and the one place where errors become exit codes.

Exit codes (the README's "Exit codes" table): 0 ok; 1 :class:`UserError` (one red line on stderr, no traceback);
2 usage (typer); 3 a review or probe found problems (:class:`ReviewFailed`); 4 ``regenerate`` left
conflicts to resolve; 130 interrupted.
Anything else is a bug and shows a traceback with locals off.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.text import Text
from typer._click import exceptions as click_exceptions

from ..errors import ReviewFailed, UserError

# typer >= 0.29 raises usage errors from its own copy of click (click is not installed with it).
_EXIT: tuple[type[BaseException], ...] = (typer.Exit,)
_INTERRUPT: tuple[type[BaseException], ...] = (KeyboardInterrupt, typer.Abort)
_CLICK_ERROR: tuple[type[BaseException], ...] = (click_exceptions.ClickException,)
_USAGE_ERROR: tuple[type[BaseException], ...] = (click_exceptions.UsageError,)

app = typer.Typer(
    name="wsforge",
    help="Turn real-time requirements into a WebSocket system you own: spec, code, docs, review.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    # Markdown mode reflows docstring paragraphs to the terminal width (rich mode keeps their hard
    # line breaks, which cut sentences in two on a narrow terminal).
    rich_markup_mode="markdown",
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"wsforge {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Turn real-time requirements into a WebSocket system you own: spec, code, docs, review."""


# Markup is off: every line carries user- or spec-derived values (paths, lists like
# ``[json, msgpack]``), and rich would eat or choke on their brackets. Colour goes through
# :func:`styled`, which never parses its text.
stderr = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
stdout = Console(soft_wrap=True, markup=False, highlight=False)


def styled(head: str, style: str, rest: str = "") -> Text:
    """``head`` in ``style`` followed by ``rest``, both shown literally (no markup parsing)."""
    return Text.assemble((head, style), rest)


EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_FINDINGS = 3
EXIT_CONFLICTS = 4
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map every outcome to an exit status."""
    from . import commands  # noqa: F401  (registers the commands on ``app``)

    try:
        result = app(args=argv, prog_name="wsforge", standalone_mode=False)
    except UserError as exc:
        stderr.print(styled("error:", "red", f" {exc}"))
        return EXIT_USER_ERROR
    except ReviewFailed as exc:
        stderr.print(styled(str(exc), "red"))
        return EXIT_FINDINGS
    except _INTERRUPT:
        stderr.print("interrupted; nothing was written")
        return EXIT_INTERRUPTED
    except _EXIT as exc:
        code = int(getattr(exc, "exit_code", 0))
        if code == EXIT_INTERRUPTED:
            stderr.print("interrupted; nothing was written")
        return code
    except _CLICK_ERROR as exc:
        exc.show()  # type: ignore[attr-defined]
        return EXIT_USAGE if isinstance(exc, _USAGE_ERROR) else int(getattr(exc, "exit_code", 1))
    code = int(result) if isinstance(result, int) else EXIT_OK
    if code == EXIT_INTERRUPTED:
        # typer turns Ctrl-C into Exit(130) and, outside standalone mode, *returns* 130 instead of
        # raising: the except clauses above never see it.
        stderr.print("interrupted; nothing was written")
    return code


def entrypoint() -> None:
    sys.exit(main())
