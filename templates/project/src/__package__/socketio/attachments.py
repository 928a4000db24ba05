"""Socket.IO binary attachments <-> the core's JSON marker ``{"_binary": "<base64>"}``. No I/O.

The core (dispatch, brokers, history) carries JSON, so a binary value inside it is a marker
object with exactly one key, ``_binary``, whose value is the bytes in standard base64 (with
padding). Native clients see the marker as it is (and may send one: Socket.IO subscribers get
real bytes); Socket.IO clients never see it:

* inbound, a BINARY_EVENT (``451-["publish",{"data":{"_placeholder":true,"num":0}}]``) and its
  binary frames are put together by an :class:`Assembly`, each ``{"_placeholder":true,"num":k}``
  replaced by the marker of attachment ``k``; the result is an ordinary EVENT for the bridge;
* outbound, :func:`to_binary` turns a translated EVENT or ACK whose data holds markers into a
  :class:`Multipart`: the BINARY_EVENT / BINARY_ACK header with placeholders, then the bytes of
  each attachment, written as one unit by the links (``session.py``, ``polling.py``).

Bounds, checked before anything is kept: 1..``MAX_ATTACHMENTS`` attachments per packet, every
placeholder's ``num`` an int in range and each used exactly once, and the header plus its
attachments within ``max_payload_bytes`` (as a frame would be). Base64 makes the core's view of
an attachment 4/3 of its size, so a publish of N bytes of binary must fit the publish limit as
about 4N/3 (the protocol document states the rule).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .packets import MAX_ATTACHMENTS, SocketPacket

MARKER_KEY: Final = "_binary"
MARKER: Final = b'"_binary":"'
"""What a core frame holding a marker contains (orjson writes no spaces): the cheap test made
before anything is parsed, so frames without binary pay one substring search."""


class AttachmentError(ValueError):
    """A binary packet whose placeholders do not match its attachments; the text says why."""


@dataclass(slots=True, frozen=True)
class Multipart:
    """A binary Socket.IO packet to send: its text ``header``, then one binary frame per attachment."""

    header: bytes
    attachments: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return len(self.header) + sum(map(len, self.attachments))


class Assembly:
    """A BINARY_EVENT whose attachments are still arriving (one at a time per connection)."""

    __slots__ = ("_limit", "_size", "discard", "packet", "parts")

    def __init__(self, packet: SocketPacket, header_size: int, limit: int, *, discard: bool = False) -> None:
        self.packet = packet
        self.parts: list[bytes] = []
        self.discard = discard
        """The header was refused already: its attachments are read and dropped, not struck."""
        self._size = header_size
        self._limit = limit

    @property
    def missing(self) -> int:
        return self.packet.attachments - len(self.parts)

    def add(self, data: bytes) -> bool:
        """Take the next attachment; True once all have come.

        Raises:
            OverflowError: the header and its attachments pass ``max_payload_bytes``.
        """
        self._size += len(data)
        if self._size > self._limit:
            raise OverflowError(f"binary packet of more than {self._limit} bytes")
        self.parts.append(b"" if self.discard else data)
        return len(self.parts) >= self.packet.attachments

    def data(self) -> Any:
        """The packet's data with every placeholder replaced by its attachment's marker."""
        markers = [{MARKER_KEY: base64.b64encode(part).decode()} for part in self.parts]
        return replace_placeholders(self.packet.data, markers)


def check_placeholders(data: Any, count: int) -> None:
    """Placeholders ``0..count-1``, each exactly once, as the header declares.

    Raises:
        AttachmentError: a ``num`` that is not an int in range, used twice, or missing.
    """
    seen = [False] * count
    for container, key in _placeholders(data):
        num = container[key].get("num")
        if type(num) is not int or not 0 <= num < count:
            raise AttachmentError(f"placeholder num {str(num)[:20]!r} is not in 0..{count - 1}")
        if seen[num]:
            raise AttachmentError(f"placeholder num {num} is used twice")
        seen[num] = True
    if not all(seen):
        raise AttachmentError(f"{count} attachments declared, {sum(seen)} placeholders found")


def replace_placeholders(data: Any, values: list[Any]) -> Any:
    """``data`` (checked by :func:`check_placeholders`) with each placeholder replaced, in place."""
    if _is_placeholder(data):
        return values[data["num"]]
    for container, key in _placeholders(data):
        container[key] = values[container[key]["num"]]
    return data


def to_binary(packet: bytes) -> bytes | Multipart:
    """A translated EVENT (``42[...]``) or ACK (``43<id>[...]``) as a binary packet when its data
    holds markers; the packet itself when none is a valid marker. At most ``MAX_ATTACHMENTS``
    markers become attachments (what clients accept); more stay markers."""
    start = packet.index(b"[")
    data = orjson.loads(packet[start:])
    attachments: list[bytes] = []
    for container, key in _markers(data):
        if len(attachments) == MAX_ATTACHMENTS:
            break
        try:
            value = base64.b64decode(container[key][MARKER_KEY], validate=True)
        except (binascii.Error, ValueError):
            continue
        container[key] = {"_placeholder": True, "num": len(attachments)}
        attachments.append(value)
    if not attachments:
        return packet
    kind = b"5" if packet[1:2] == b"2" else b"6"
    header = b"4" + kind + b"%d-" % len(attachments) + packet[2:start] + orjson.dumps(data)
    return Multipart(header, tuple(attachments))


def _is_placeholder(value: Any) -> bool:
    return type(value) is dict and value.get("_placeholder") is True


def _is_marker(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and type(value.get(MARKER_KEY)) is str


def _placeholders(data: Any) -> list[tuple[Any, Any]]:
    return _find(data, _is_placeholder)


def _markers(data: Any) -> list[tuple[Any, Any]]:
    return _find(data, _is_marker)


def _find(data: Any, match: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value inside ``data`` that ``match`` accepts; an explicit stack,
    not recursion: orjson accepts nesting deeper than Python's recursion limit."""
    found: list[tuple[Any, Any]] = []
    stack = [data] if type(data) is dict or type(data) is list else []
    while stack:
        value = stack.pop()
        items: Any = value.items() if type(value) is dict else enumerate(value)
        for key, item in items:
            if match(item):
                found.append((value, key))
            elif type(item) is dict or type(item) is list:
                stack.append(item)
    return found
