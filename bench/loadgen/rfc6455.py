"""Just enough RFC 6455 client framing for the load generator's raw connections, no I/O.

picows parses every frame in Cython but still calls back into Python once per frame; at the
fan-out rates of the fastest servers that per-frame callback is most of the generator's CPU. The
raw connection (``raw.py``) uses this module for its handshake and setup frames, then stops
framing altogether and counts deliveries with :class:`MarkerCounter` (and, in the low-rate latency
passes, reads each delivery's send time with :class:`StampReader`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterator

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


class ProtocolError(Exception):
    """The server sent something a WebSocket client must not accept."""


def handshake_request(host: str, port: int, path: str) -> tuple[bytes, bytes]:
    """The upgrade request and the ``Sec-WebSocket-Accept`` value the server must answer with."""
    key = base64.b64encode(os.urandom(16))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return request, base64.b64encode(hashlib.sha1(key + GUID).digest())  # noqa: S324 - RFC 6455 says SHA-1


def parse_handshake_response(head: bytes, accept: bytes) -> None:
    """Raise unless ``head`` (up to the blank line) is a 101 carrying the expected accept value."""
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"101":
        raise ConnectionRefusedError(lines[0].decode(errors="replace"))
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in lines[1:] if line)
    }
    if headers.get(b"sec-websocket-accept") != accept:
        raise ProtocolError("Sec-WebSocket-Accept does not match the key sent")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked as RFC 6455 §5.3 requires of every client frame."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    stream = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return header + mask + masked


class FrameReader:
    """Splits a byte stream from a server into (opcode, payload) messages.

    Reassembles fragmented data messages, lets control frames through between fragments, and
    raises :class:`ProtocolError` on what a server must never send (masked frames, reserved bits
    without an extension, reserved opcodes). ``pending`` is what has not formed a frame yet.
    """

    def __init__(self) -> None:
        self.pending = b""
        self._fragments: list[bytes] = []
        self._opcode = 0

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        buf = self.pending + data if self.pending else data
        i, n = 0, len(buf)
        while n - i >= 2:
            b0, b1 = buf[i], buf[i + 1]
            length, header = b1 & 0x7F, 2
            if length == 126:
                if n - i < 4:
                    break
                length, header = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
            elif length == 127:
                if n - i < 10:
                    break
                length, header = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            if n - i < header + length:
                break
            if b1 & 0x80 or b0 & 0x70:
                raise ProtocolError(f"server frame with mask or reserved bits set (0x{b0:02x} 0x{b1:02x})")
            payload = buf[i + header : i + header + length]
            i += header + length
            message = self._assemble(b0 & 0x80, b0 & 0x0F, payload)
            if message is not None:
                yield message
        self.pending = buf[i:]

    def _assemble(self, fin: int, opcode: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= CLOSE:
            if opcode > PONG or not fin:
                raise ProtocolError(f"bad control frame (opcode {opcode}, fin {bool(fin)})")
            return opcode, payload
        if opcode == CONTINUATION:
            if not self._fragments:
                raise ProtocolError("continuation frame with no message to continue")
            self._fragments.append(payload)
        elif opcode in (TEXT, BINARY):
            if self._fragments:
                raise ProtocolError("new data frame inside a fragmented message")
            self._opcode, self._fragments = opcode, [payload]
        else:
            raise ProtocolError(f"reserved opcode {opcode}")
        if not fin:
            return None
        message = b"".join(self._fragments)
        self._fragments = []
        return self._opcode, message


class MarkerCounter:
    """Counts a marker in a byte stream fed in arbitrary chunks, each occurrence exactly once.

    A marker may straddle two chunks; it is then found in the previous chunk's last
    ``len(marker) - 1`` bytes joined to this chunk's first ``len(marker) - 1``. That join is too
    short to hold a whole marker from either side alone, so nothing is counted twice.
    """

    def __init__(self, marker: bytes) -> None:
        if not marker:
            raise ValueError("an empty marker occurs everywhere")
        self.marker = marker
        self.keep = len(marker) - 1
        self.tail = b""

    def feed(self, data: bytes) -> int:
        keep = self.keep
        found = data.count(self.marker) + (self.tail + data[:keep]).count(self.marker)
        if keep:
            self.tail = (self.tail + data[-keep:])[-keep:]
        return found


class StampReader:
    """The number after each occurrence of a marker in a byte stream fed in arbitrary chunks.

    A delivery's ``"t":<ns>`` may be cut anywhere by a read, digits included. A number counts only
    once a non-digit follows it, so a cut one is never read short; what follows the last complete
    match is carried into the next chunk, trimmed to the longest incomplete ``marker + digits``.
    Each occurrence is returned exactly once, in stream order.
    """

    MAX_DIGITS = 20
    """Digits of the largest number read (a 64-bit value has at most 20)."""

    def __init__(self, marker: bytes) -> None:
        if not marker:
            raise ValueError("an empty marker occurs everywhere")
        self.pattern = re.compile(re.escape(marker) + rb"(\d{1,%d})(?=\D)" % self.MAX_DIGITS)
        self.keep = len(marker) + self.MAX_DIGITS
        self.carry = b""

    def feed(self, data: bytes) -> list[int]:
        buffer = self.carry + data if self.carry else data
        stamps = []
        end = 0
        for match in self.pattern.finditer(buffer):
            stamps.append(int(match.group(1)))
            end = match.end()
        rest = len(buffer) - end
        self.carry = buffer[-self.keep :] if rest > self.keep else buffer[end:]
        return stamps
