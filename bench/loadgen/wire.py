"""How the load generator speaks to each kind of server: frames in, frames out, no I/O.

Two dialects cover every subject: ``wsforge`` (envelope v1 of docs/runtime-contract.md §3, spoken by
the generated server and by the raw peers) and ``socketio`` (Engine.IO 4 / Socket.IO 5 over a bare
WebSocket, no long-polling). Hot paths never parse JSON to count: a delivery is recognised by the
``"t":`` key that only the published payload carries, and its timestamp is read with one regex.
"""

from __future__ import annotations

import re
from typing import Protocol

import orjson

DELIVERY_MARKER = b'"t":'
"""Only the published payload carries this key, so it marks a delivered event in any frame."""
_T = re.compile(re.escape(DELIVERY_MARKER) + rb"(\d+)")
FILLER = "x" * 64
"""Keeps an event near the size of a short chat line (~200 bytes on the wire)."""


def publish_payload(t_ns: int) -> dict[str, object]:
    return {"text": FILLER, "t": t_ns}


def delivery_time(data: bytes) -> int:
    """The publisher's ``t`` (monotonic ns) carried by a delivered event; -1 when absent."""
    match = _T.search(data)
    return int(match.group(1)) if match else -1


def is_delivery(data: bytes) -> bool:
    return DELIVERY_MARKER in data


class Dialect(Protocol):
    name: str

    def path(self, base: str, token: str | None) -> str: ...

    def on_open(self, data: bytes) -> tuple[bool, bytes | None]:
        """Feed a frame received before the session is ready: (ready, frame to send back)."""
        ...

    def control_reply(self, data: bytes) -> bytes | None:
        """A frame that must be answered at the application level (Engine.IO ping), else None."""
        ...

    def subscribe(self, channel: str, rid: int) -> bytes: ...

    def publish(self, channel: str, rid: int, payload: object) -> bytes: ...

    def request(self, channel: str, rid: int) -> bytes:
        """The request of the request/ack workload: a publish to a channel nobody reads."""
        ...

    def ping(self, rid: int) -> bytes | None:
        """The protocol's own ``ping`` request (request/ack ``--action ping``); None: not spoken."""
        ...


class Wsforge:
    name = "wsforge"

    def path(self, base: str, token: str | None) -> str:
        return base + (f"?access_token={token}" if token else "")

    def on_open(self, data: bytes) -> tuple[bool, bytes | None]:
        return True, None

    def control_reply(self, data: bytes) -> bytes | None:
        return None

    def subscribe(self, channel: str, rid: int) -> bytes:
        return orjson.dumps(
            {"v": 1, "type": "request", "action": "subscribe", "id": f"s{rid}", "channel": channel}
        )

    def publish(self, channel: str, rid: int, payload: object) -> bytes:
        return orjson.dumps(
            {
                "v": 1,
                "type": "request",
                "action": "publish",
                "id": f"p{rid}",
                "channel": channel,
                "payload": payload,
            }
        )

    _REQUEST = (
        b'{"v":1,"type":"request","action":"publish","id":"p%d","channel":"%s","payload":{"text":"'
        + FILLER.encode()
        + b'"}}'
    )

    def request(self, channel: str, rid: int) -> bytes:
        """``publish(channel, rid, {"text": FILLER})``'s bytes, formatted instead of serialised.

        The closed loop sends one per answer; at ~10^5 round trips/s the generator's own cost per
        request is what keeps it ahead of the server.
        """
        return self._REQUEST % (rid, channel.encode())

    _PING = b'{"v":1,"type":"request","action":"ping","id":"p%d"}'

    def ping(self, rid: int) -> bytes | None:
        """The protocol's ``ping``: answered without a channel, a broker or a payload check; the
        request/ack target against the minimal peer (``peers/picows_json_peer.py``) uses it."""
        return self._PING % rid


class SocketIO:
    name = "socketio"

    def path(self, base: str, token: str | None) -> str:
        query = "EIO=4&transport=websocket" + (f"&access_token={token}" if token else "")
        return f"/socket.io/?{query}"

    def on_open(self, data: bytes) -> tuple[bool, bytes | None]:
        if data[:1] == b"0":  # Engine.IO open: join the default namespace
            return False, b"40"
        if data[:2] == b"40":
            return True, None
        if data[:2] == b"44":
            raise ConnectionRefusedError(data.decode(errors="replace"))
        return False, self.control_reply(data)

    def control_reply(self, data: bytes) -> bytes | None:
        return b"3" if data == b"2" else None

    def subscribe(self, channel: str, rid: int) -> bytes:
        return b"42%d" % rid + orjson.dumps(["subscribe", {"channel": channel}])

    def publish(self, channel: str, rid: int, payload: object) -> bytes:
        return b"42%d" % rid + orjson.dumps(["publish", {"channel": channel, "payload": payload}])

    def request(self, channel: str, rid: int) -> bytes:
        return self.publish(channel, rid, {"text": FILLER})

    def ping(self, rid: int) -> bytes | None:
        return None  # Socket.IO has no such event; its peer answers only subscribe and publish


DIALECTS: dict[str, Dialect] = {"wsforge": Wsforge(), "socketio": SocketIO()}
