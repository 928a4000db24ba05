"""``wsforge probe URL``: a bounded black-box audit of a running WebSocket server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from ..probe import ProbeOptions, probe_rules, run_probes
from ._app import app, stderr
from .review_cmd import FailOn, OutputFormat, check_fail, emit


@app.command("probe")
def probe(
    url: Annotated[
        str, typer.Argument(help="ws:// or wss:// URL of the endpoint, e.g. ws://127.0.0.1:8000/ws.")
    ],
    token: Annotated[str | None, typer.Option(help="A valid token; enables the token probes.")] = None,
    jwt_secret: Annotated[
        str | None,
        typer.Option("--jwt-secret", help="HMAC secret: the probe signs valid and expired tokens."),
    ] = None,
    jwt_algorithm: Annotated[str, typer.Option("--jwt-algorithm")] = "HS256",
    jwt_audience: Annotated[str | None, typer.Option("--jwt-audience")] = None,
    jwt_issuer: Annotated[str | None, typer.Option("--jwt-issuer")] = None,
    origin: Annotated[
        str | None, typer.Option(help="An allowed Origin to send as a legitimate client.")
    ] = None,
    subprotocol: Annotated[
        list[str] | None,
        typer.Option("--subprotocol", help="Subprotocol a legitimate client offers (repeatable)."),
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only this probe (repeatable).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for any one answer.")] = 5.0,
    ping_wait: Annotated[
        float, typer.Option("--ping-wait", help="Seconds to wait for a server ping.")
    ] = 30.0,
    oversize: Annotated[int, typer.Option(help="Bytes in the oversized message.")] = 4 * 1024 * 1024 + 1,
    flood: Annotated[int, typer.Option(help="Messages in the flood.")] = 500,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output on stdout.")
    ] = OutputFormat.TABLE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the output here instead.")
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 3 when a finding is at least this severe.")
    ] = FailOn.ERROR,
) -> None:
    """Probe a running server: auth, Origin, subprotocol, size and rate limits, UTF-8, ping/pong,
    close codes, slow readers and reconnects. Every probe is bounded in count and time.

    Only the host in URL is contacted. Exit 0 when clean, 3 when findings reach --fail-on.
    """
    opts = ProbeOptions(
        url=url,
        token=token,
        jwt_secret=jwt_secret,
        jwt_algorithm=jwt_algorithm,
        jwt_audience=jwt_audience,
        jwt_issuer=jwt_issuer,
        origin=origin,
        subprotocols=subprotocol or [],
        timeout_s=timeout,
        ping_wait_s=ping_wait,
        oversize_bytes=oversize,
        flood_count=flood,
    )
    stderr.print(f"probing {url} ...", highlight=False)
    report = asyncio.run(run_probes(opts, only=only))
    emit(report, fmt, output, probe_rules())
    check_fail(report, fail_on)
