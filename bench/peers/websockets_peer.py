"""Raw ``websockets`` peer: a room is a set, delivery is ``websockets.broadcast``.

This is the server the library's own docs lead a user to write (docs/topics/broadcast.rst).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import orjson
from _common import event, parse_args, pid_note, redis_channel, response, token_ok
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

rooms: dict[str, set[ServerConnection]] = {}


async def main() -> None:
    args = parse_args(__doc__ or "")
    redis_client: Any = None
    if args.redis:
        import redis.asyncio as aioredis

        redis_client = aioredis.from_url(args.redis)

    def check(conn: ServerConnection, request: Request) -> Response | None:
        if token_ok(request.path, args.jwt_secret):
            return None
        return conn.respond(HTTPStatus.UNAUTHORIZED, "invalid token\n")

    async def handler(ws: ServerConnection) -> None:
        joined: list[str] = []
        try:
            async for raw in ws:
                req = orjson.loads(raw)
                action = req.get("action")
                if action == "publish":
                    channel = req["channel"]
                    data = event(channel, req.get("payload"))
                    if redis_client is not None:
                        await redis_client.publish(redis_channel(channel), data)
                    else:
                        broadcast(rooms.get(channel, ()), data.decode())
                elif action == "subscribe":
                    channel = req["channel"]
                    rooms.setdefault(channel, set()).add(ws)
                    joined.append(channel)
                    if redis_client is not None and len(rooms[channel]) == 1:
                        await bridge.subscribe(redis_channel(channel))
                await ws.send(response(req).decode())
        finally:
            for channel in joined:
                rooms.get(channel, set()).discard(ws)

    bridge: Any = None
    if redis_client is not None:
        bridge = redis_client.pubsub(ignore_subscribe_messages=True)
        await bridge.subscribe("bench:__keepalive__")

        async def relay() -> None:
            async for message in bridge.listen():
                channel = message["channel"].decode().removeprefix("bench:")
                broadcast(rooms.get(channel, ()), message["data"].decode())

        asyncio.get_running_loop().create_task(relay())

    async with serve(
        handler,
        args.host,
        args.port,
        process_request=check,
        ping_interval=args.heartbeat,
        ping_timeout=args.heartbeat,
    ) as server:
        pid_note()
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
