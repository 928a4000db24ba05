"""Minimal raw ``picows`` peer: parse each text frame with orjson, answer it; nothing else.

The lightest honest server for the request/ack workload (issue 23): what a speed-minded user writes
when all a request needs is an answer. It parses the request as JSON (a server that skipped that
would not be answering it) and replies with its ``id``, but has no envelope (no version, type or
action checks), no channels, no limits, no validation, no authorization at the upgrade beyond the
bench's JWT, no metrics. The generated server's request/ack target (0.9x per server CPU-second) is
measured against this peer, on the protocol's own ``ping`` (``--workloads reqrep``'s ping pass).

Publishes and subscribes get the same one answer: this peer never delivers events, so it is not
part of the fan-out, idle or scale-out workloads.
"""

from __future__ import annotations

import asyncio
import os

import orjson
from _common import parse_args, pid_note, token_ok
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

_loads = orjson.loads
_dumps = orjson.dumps
_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE


class MinimalListener(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == _TEXT:
            request = _loads(frame.get_payload_as_memoryview())
            transport.send(_TEXT, _dumps({"id": request.get("id"), "ok": True}))
        elif kind == _CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


async def main() -> None:
    args = parse_args(__doc__ or "")

    def factory(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        path = request.path.decode() if isinstance(request.path, bytes) else request.path
        if token_ok(path, args.jwt_secret):
            return MinimalListener()
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
    if os.environ.get("PEER_UVLOOP") == "1":  # the bench's picows-json-uvloop peer
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
