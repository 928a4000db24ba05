"""Raw ``picows`` peer: a room is a set of transports, one ``send`` per member per message.

The naive loop a picows user writes first; every option at its default (16 KiB read buffer).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
from _common import event, parse_args, pid_note, redis_channel, response, token_ok
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

rooms: dict[str, set[WSTransport]] = {}
redis_client: Any = None
bridge: Any = None


def deliver(channel: str, data: bytes) -> None:
    for member in rooms.get(channel, ()):
        member.send(WSMsgType.TEXT, data)


class PeerListener(WSListener):
    def __init__(self) -> None:
        self.joined: list[str] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        req = orjson.loads(frame.get_payload_as_memoryview())
        action = req.get("action")
        if action == "publish":
            channel = req["channel"]
            data = event(channel, req.get("payload"))
            if redis_client is not None:
                asyncio.get_running_loop().create_task(redis_client.publish(redis_channel(channel), data))
            else:
                deliver(channel, data)
        elif action == "subscribe":
            channel = req["channel"]
            rooms.setdefault(channel, set()).add(transport)
            self.joined.append(channel)
            if bridge is not None and len(rooms[channel]) == 1:
                asyncio.get_running_loop().create_task(bridge.subscribe(redis_channel(channel)))
        transport.send(WSMsgType.TEXT, response(req))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for channel in self.joined:
            rooms.get(channel, set()).discard(transport)


async def main() -> None:
    global redis_client, bridge
    args = parse_args(__doc__ or "")
    if args.redis:
        import redis.asyncio as aioredis

        redis_client = aioredis.from_url(args.redis)
        bridge = redis_client.pubsub(ignore_subscribe_messages=True)
        await bridge.subscribe("bench:__keepalive__")

        async def relay() -> None:
            async for message in bridge.listen():
                deliver(message["channel"].decode().removeprefix("bench:"), message["data"])

        asyncio.get_running_loop().create_task(relay())

    def factory(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        if token_ok(
            request.path.decode() if isinstance(request.path, bytes) else request.path, args.jwt_secret
        ):
            return PeerListener()
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_error_response(401, b"invalid token\n"), None
        )

    server = await ws_create_server(
        factory,
        args.host,
        args.port,
        enable_auto_ping=True,
        auto_ping_idle_timeout=args.heartbeat,
        auto_ping_reply_timeout=args.heartbeat,
    )
    pid_note()
    await server.serve_forever()


if __name__ == "__main__":
    if os.environ.get("PEER_UVLOOP") == "1":  # the bench's picows-uvloop peer
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
