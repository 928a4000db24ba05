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
    write_buffer_bound: bool = True
    """Cut a connection whose write buffer passes 256 KiB (websockets queues pongs without limit)."""
    fragment_limit: bool = True
    """websockets' own cap on fragments per message; off: messages are streamed and joined unbounded."""
    origin_equals_host: bool = False
    """Also accept an Origin equal to http://<Host header> (the DNS-rebinding hole)."""
    forwarded_for_cap: bool = False
    """A per-IP cap of 5 connections keyed on the left-most X-Forwarded-For entry, as the client wrote it."""


def _refuse(status: HTTPStatus, text: str) -> Response:
    body = text.encode()
    headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


@contextlib.asynccontextmanager
async def running(weakness: Weakness = Weakness()) -> AsyncIterator[str]:
    """Serve until the block exits; yields the ws:// URL."""
    lock = asyncio.Lock()
    per_ip: dict[str, int] = {}

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if weakness.auth:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                return _refuse(HTTPStatus.UNAUTHORIZED, "missing token")
            try:
                jwt.decode(header[7:], SECRET, algorithms=["HS256"], options={"require": ["exp"]})
            except jwt.InvalidTokenError as exc:
                return _refuse(HTTPStatus.UNAUTHORIZED, f"invalid token: {type(exc).__name__}")
        origin = request.headers.get("Origin")
        same_host = weakness.origin_equals_host and origin == f"http://{request.headers.get('Host')}"
        if weakness.origin_check and origin not in (None, ORIGIN) and not same_host:
            return _refuse(HTTPStatus.FORBIDDEN, "origin not allowed")
        if weakness.forwarded_for_cap:
            forwarded = request.headers.get("X-Forwarded-For")
            ip = forwarded.split(",")[0].strip() if forwarded else str(connection.remote_address[0])
            if per_ip.get(ip, 0) >= 5:
                return _refuse(HTTPStatus.TOO_MANY_REQUESTS, "too many connections from this address")
            per_ip[ip] = per_ip.get(ip, 0) + 1
            connection.connection_lost_waiter.add_done_callback(lambda _: per_ip.update({ip: per_ip[ip] - 1}))
        return None

    async def watch_write_buffer(ws: ServerConnection) -> None:
        while True:
            await asyncio.sleep(0.02)
            if ws.transport.get_write_buffer_size() > 256 * 1024:
                ws.transport.abort()
                return

    async def handler(ws: ServerConnection) -> None:
        if weakness.stall_on_slow_reader:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        window_start, count = time.monotonic(), 0
        watchdog = asyncio.create_task(watch_write_buffer(ws)) if weakness.write_buffer_bound else None
        with contextlib.suppress(Exception):
            async for message in _messages(ws, weakness.fragment_limit):
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
        if watchdog is not None:
            watchdog.cancel()

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


async def _messages(ws: ServerConnection, fragment_limit: bool) -> AsyncIterator[str | bytes]:
    """Incoming messages; without ``fragment_limit``, streamed and joined however many frames."""
    if fragment_limit:
        async for message in ws:
            yield message
        return
    while True:
        parts = [part async for part in ws.recv_streaming()]
        yield (
            "".join(str(p) for p in parts)
            if parts and isinstance(parts[0], str)
            else b"".join(p for p in parts if isinstance(p, bytes))
        )


ENGINE_IO_OPEN = (
    '0{"sid":"probe-sid","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
)


@contextlib.asynccontextmanager
async def running_engine_io() -> AsyncIterator[str]:
    """A stand-in Socket.IO endpoint: sends the Engine.IO open packet and answers only Engine.IO
    pings ("2" -> "3"), dropping every other frame, as python-socketio does with unknown packets."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(ENGINE_IO_OPEN)
        with contextlib.suppress(Exception):
            async for message in ws:
                if message == "2":
                    await ws.send("3")

    async with serve(handler, "127.0.0.1", 0, ping_interval=0.5 * UNIT, max_size=1_000_000) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/engine.io/?transport=websocket"
