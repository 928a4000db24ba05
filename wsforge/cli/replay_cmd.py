"""``wsforge replay RECORDING URL``: reproduce a recorded session and show where answers differ."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..errors import ReviewFailed
from ..probe.replay import load_recording, replay
from ..probe.runner import validate_url
from ._app import app, stderr, stdout, styled


class ReplayFormat(StrEnum):
    """``replay --format``: the differences as a table, or the whole result as JSON."""

    TABLE = "table"
    JSON = "json"


@app.command("replay")
def replay_cmd(
    recording: Annotated[
        Path, typer.Argument(help="JSON Lines file written by a generated server (WS_RECORD_PATH).")
    ],
    url: Annotated[str, typer.Argument(help="ws:// URL of the server to replay against.")],
    speed: Annotated[float, typer.Option(help="Replay this many times faster than recorded.")] = 1.0,
    as_fast: Annotated[bool, typer.Option("--as-fast", help="Ignore recorded timing.")] = False,
    conn: Annotated[list[str] | None, typer.Option("--conn", help="Only this connection or user id.")] = None,
    token: Annotated[str | None, typer.Option(help="Token for every replayed connection.")] = None,
    jwt_secret: Annotated[
        str | None, typer.Option("--jwt-secret", help="Sign a token for each recorded user instead.")
    ] = None,
    origin: Annotated[str | None, typer.Option(help="Origin header to send.")] = None,
    settle: Annotated[float, typer.Option(help="Seconds to wait for answers after the last frame.")] = 2.0,
    fmt: Annotated[
        ReplayFormat, typer.Option("--format", "-f", help="Output on stdout: a table, or json for machines.")
    ] = ReplayFormat.TABLE,
) -> None:
    """Re-send recorded client frames and compare the server's answers with the recording.

    All connections' frames are re-sent in their recorded order, each step waiting for the answers
    the recording had by then, so a replay against a fresh server gets the same answers.
    Timestamps, epochs and token expiries are ignored; seq is compared exactly. Exit 0 when every
    answer matches, 3 when a session diverges (the first differing frame of each session is shown).
    """
    validate_url(url)
    sessions = load_recording(recording, connections=set(conn) if conn else None)
    stderr.print(f"replaying {len(sessions)} session(s) against {url} ...", highlight=False)
    result = asyncio.run(
        replay(
            sessions,
            url,
            speed=None if as_fast else speed,
            token=token,
            jwt_secret=jwt_secret,
            origin=origin,
            settle_s=settle,
        )
    )
    if fmt == ReplayFormat.JSON:
        stdout.out(json.dumps(result.to_dict(), indent=2), highlight=False)
    else:
        table = Table(title=Text(f"replay of {recording}"))
        for column in ("connection", "frame #", "recorded", "replayed"):
            table.add_column(column, overflow="fold")
        for diff in result.differences:
            table.add_row(
                Text(diff.conn),
                Text(str(diff.index)),
                Text(json.dumps(diff.expected)),
                Text(json.dumps(diff.got)),
            )
        if result.differences:
            stdout.print(table)
        for error in result.errors:
            stdout.print(styled("error", "red", f" {error}"))
        stdout.print(
            f"{result.sessions} session(s), {result.frames_sent} frame(s) sent, "
            f"{result.frames_received}/{result.frames_expected} answer(s), "
            f"{len(result.differences)} session(s) differ",
            highlight=False,
        )
    if result.differences or result.errors:
        raise ReviewFailed(
            f"replay differs from the recording in {len(result.differences) + len(result.errors)} session(s)",
            len(result.differences) + len(result.errors),
        )
