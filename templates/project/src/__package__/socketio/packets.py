"""Engine.IO v4 and Socket.IO v5 packets over WebSocket text frames. No I/O.

One WebSocket text frame carries one Engine.IO packet: a type digit and its data. A ``message``
(``4``) carries one Socket.IO packet: a type digit, an optional ``/namespace,``, an optional ack
id (decimal digits) and a JSON array or object. For example ``42["publish",{...}]`` is an EVENT
without ack, ``4213["publish",{...}]`` one with ack id 13, ``4313[{...}]`` its ACK.

Binary attachments (``attachments.py``): a BINARY_EVENT or BINARY_ACK names its attachment count
and a ``-`` right after its type digit, ``451-13["publish",{"_placeholder":true,"num":0}]``, and
is followed by that many binary frames (over long-polling, ``b<base64>`` records).

Written here rather than taken from python-engineio / python-socketio: their ``Packet`` classes
decode through the stdlib ``json`` module and build an object per packet (measured in
``bench/RESULTS.md``, Socket.IO section), and this is every request's and every event's path. The
parser is total: malformed input gives a :class:`PacketError`, never an exception.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

import orjson


class EngineType(enum.IntEnum):
    """Engine.IO v4 packet types (the first character of a frame)."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class SocketType(enum.IntEnum):
    """Socket.IO v5 packet types (the first character after the Engine.IO ``4``)."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


MAIN_NAMESPACE: Final = "/"
MAX_ACK_DIGITS: Final = 15
"""Ack ids are counters the client keeps (from 0); longer ones are refused, not parsed as big ints."""
MAX_NAMESPACE_LENGTH: Final = 128
MAX_ATTACHMENTS: Final = 10
"""Binary attachments of one packet at most: socket.io-parser's own default (``maxAttachments``)."""

PING: Final = b"2"
"""The server's Engine.IO ping (the client answers ``3``)."""


class PacketError(ValueError):
    """A frame that is not a well-formed Engine.IO / Socket.IO packet; the text says why."""


@dataclass(slots=True, init=False)
class SocketPacket:
    """One decoded Socket.IO packet. ``ack`` is None when the sender wants no acknowledgement;
    ``attachments`` is how many binary frames follow (BINARY_EVENT, BINARY_ACK), else 0."""

    type: SocketType
    namespace: str
    ack: int | None
    data: Any
    attachments: int

    def __init__(
        self, type: SocketType, namespace: str, ack: int | None, data: Any, attachments: int = 0
    ) -> None:
        self.type = type
        self.namespace = namespace
        self.ack = ack
        self.data = data
        self.attachments = attachments


_SOCKET_TYPES: Final = {str(t.value): t for t in SocketType}


def decode_socket(text: str) -> SocketPacket:
    """Parse the Socket.IO packet of an Engine.IO ``message`` (``text`` is after the ``4``).

    Raises:
        PacketError: unknown type, an attachment count out of 1..``MAX_ATTACHMENTS``, a
            namespace or ack id out of bounds, or data that is not JSON.
    """
    if not text:
        raise PacketError("empty Socket.IO packet")
    kind = _SOCKET_TYPES.get(text[0])
    if kind is None:
        raise PacketError(f"unknown Socket.IO packet type {text[0]!r}")
    end = len(text)
    i = 1
    attachments = 0
    if kind is SocketType.BINARY_EVENT or kind is SocketType.BINARY_ACK:
        dash = text.find("-", 1, 4)
        count = text[1:dash]
        if dash < 0 or not (count.isascii() and count.isdigit()):
            raise PacketError("a binary packet starts with its attachment count and '-'")
        attachments, i = int(count), dash + 1
        if not 0 < attachments <= MAX_ATTACHMENTS:
            raise PacketError(f"{attachments} attachments; a packet carries 1..{MAX_ATTACHMENTS}")
    namespace = MAIN_NAMESPACE
    if i < end and text[i] == "/":
        # Clients always end a namespace other than "/" with a comma, even with nothing after it.
        comma = text.find(",", i, i + MAX_NAMESPACE_LENGTH + 1)
        if comma < 0:
            raise PacketError(f"namespace longer than {MAX_NAMESPACE_LENGTH} or not followed by ','")
        namespace, i = text[i:comma], comma + 1
    start = i
    while i < end and "0" <= text[i] <= "9":
        i += 1
    if i - start > MAX_ACK_DIGITS:
        raise PacketError(f"ack id longer than {MAX_ACK_DIGITS} digits")
    ack = int(text[start:i]) if i > start else None
    data: Any = None
    if i < end:
        try:
            data = orjson.loads(text[i:])
        except orjson.JSONDecodeError as exc:
            raise PacketError(f"packet data is not valid JSON: {exc}"[:200]) from exc
    return SocketPacket(kind, namespace, ack, data, attachments)


def encode_open(
    sid: str, ping_interval_ms: int, ping_timeout_ms: int, max_payload: int, upgrades: tuple[str, ...] = ()
) -> bytes:
    """The Engine.IO OPEN packet; ``upgrades`` is offered to a long-polling session only."""
    body = {
        "sid": sid,
        "upgrades": list(upgrades),
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    }
    return b"0" + orjson.dumps(body)


def encode_connect(namespace: str, sid: str) -> bytes:
    """Socket.IO CONNECT answered: the namespace is joined under ``sid``."""
    return b"40" + _namespace_prefix(namespace) + orjson.dumps({"sid": sid})


def encode_connect_error(namespace: str, message: str, data: Any = None) -> bytes:
    """Socket.IO CONNECT_ERROR: the client's ``connect_error`` gets ``message`` (and ``data``)."""
    body: dict[str, Any] = {"message": message}
    if data is not None:
        body["data"] = data
    return b"44" + _namespace_prefix(namespace) + orjson.dumps(body)


def encode_event(name: str, *args: Any) -> bytes:
    """A Socket.IO EVENT on the main namespace, no ack: ``42["name",...args]``."""
    return b"42" + orjson.dumps([name, *args])


def encode_ack(ack: int, *args: Any) -> bytes:
    """A Socket.IO ACK on the main namespace: ``43<ack>[...args]``."""
    return b"43%d" % ack + orjson.dumps(list(args))


def _namespace_prefix(namespace: str) -> bytes:
    return b"" if namespace == MAIN_NAMESPACE else namespace.encode() + b","
