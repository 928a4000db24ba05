"""Small WebSocket servers for the probe tests: one reference server and its weakened variants.

Each :class:`Weakness` switches off one defence so that a test can check the probe reports
exactly that weakness. They are real ``websockets`` servers on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import jwt
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

SECRET = "probe-test-secret-0123456789abcdef0123"
ORIGIN = "https://app.example.com"
UNIT = float(os.environ.get("WSFORGE_TEST_TIMEOUT_SCALE", "1"))
"""Every deadline in the probe tests is a multiple of this (raise it on slow machines)."""


@dataclass(frozen=True)
class Weakness:
    auth: bool = True
    origin_check: bool = True
    size_limit: bool = True
    ping: bool = True
    rate_limit: bool = True
    stall_on_slow_reader: bool = False
    """Replies under one global lock: one client that stops reading blocks every other one."""


def _refuse(status: HTTPStatus, text: str) -> Response:
    body = text.encode()
    headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


@contextlib.asynccontextmanager
async def running(weakness: Weakness = Weakness()) -> AsyncIterator[str]:
    """Serve until the block exits; yields the ws:// URL."""
    lock = asyncio.Lock()

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if weakness.auth:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                return _refuse(HTTPStatus.UNAUTHORIZED, "missing token")
            try:
                jwt.decode(header[7:], SECRET, algorithms=["HS256"], options={"require": ["exp"]})
            except jwt.InvalidTokenError as exc:
                return _refuse(HTTPStatus.UNAUTHORIZED, f"invalid token: {type(exc).__name__}")
        if weakness.origin_check and request.headers.get("Origin") not in (None, ORIGIN):
            return _refuse(HTTPStatus.FORBIDDEN, "origin not allowed")
        return None

    async def handler(ws: ServerConnection) -> None:
        if weakness.stall_on_slow_reader:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        window_start, count = time.monotonic(), 0
        with contextlib.suppress(Exception):
            async for message in ws:
                count += 1
                if weakness.rate_limit:
                    now = time.monotonic()
                    if now - window_start > 1.0:
                        window_start, count = now, 1
                    if count > 50:
                        await ws.close(4008, "rate limit exceeded repeatedly")
                        return
                if weakness.stall_on_slow_reader:
                    async with lock:
                        await ws.send(message)
                else:
                    await ws.send(message)

    kwargs: dict[str, Any] = {
        "process_request": process_request,
        "max_size": 64 * 1024 if weakness.size_limit else None,
        "ping_interval": 0.5 * UNIT if weakness.ping else None,
        "ping_timeout": 5 * UNIT,
        "close_timeout": 1 * UNIT,
        "subprotocols": ["wsforge.v1.json"],
    }
    if weakness.stall_on_slow_reader:
        kwargs["write_limit"] = 4096
    async with serve(handler, "127.0.0.1", 0, **kwargs) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"
