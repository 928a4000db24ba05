"""python-socketio peer: ``AsyncServer`` on aiohttp, WebSocket transport only, orjson codec.

That is its fastest documented asyncio setup: the websocket-only transport skips the long-polling
upgrade dance, and the ``json`` option takes a faster module. Rooms and ``emit(..., to=room)`` are
the library's own; acks are handler return values. Scale-out uses its ``AsyncRedisManager``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import socketio  # type: ignore[import-untyped]
from _common import parse_args, pid_note, token_ok
from aiohttp import web


class OrjsonModule:
    """The ``json`` shape python-socketio expects (``dumps`` returns ``str``)."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return orjson.loads(data)


async def main() -> None:
    args = parse_args(__doc__ or "")
    manager = socketio.AsyncRedisManager(args.redis) if args.redis else None
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        transports=["websocket"],
        json=OrjsonModule,
        ping_interval=args.heartbeat,
        ping_timeout=args.heartbeat,
        client_manager=manager,
    )

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        path = environ.get("RAW_URI") or "/?" + environ.get("QUERY_STRING", "")
        if not token_ok(path, args.jwt_secret):
            raise socketio.exceptions.ConnectionRefusedError("invalid token")

    @sio.event  # type: ignore[untyped-decorator]
    async def subscribe(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.enter_room(sid, data["channel"])
        return {}

    @sio.event  # type: ignore[untyped-decorator]
    async def publish(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.emit(
            "message", {"channel": data["channel"], "payload": data.get("payload")}, to=data["channel"]
        )
        return {}

    @sio.event  # type: ignore[untyped-decorator]
    async def ping(sid: str, data: Any) -> dict[str, Any]:
        return {}

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=4096)
    await site.start()
    pid_note()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
