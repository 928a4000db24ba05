"""A deliberately minimal WebSocket client that will send what a real client never would.

Client libraries refuse to write invalid UTF-8 in a text frame, hide the handshake status behind
exceptions and answer pings for you. A probe needs to see and control each of those, so this
module speaks RFC 6455 directly over an asyncio stream: one handshake, frames in and out, nothing
automatic. It is only for probing; every read has a deadline chosen by the caller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_HEADER_BYTES = 64 * 1024
MAX_READ_FRAME = 64 * 1024 * 1024


class ProbeConnectionError(Exception):
    """The server closed or broke the TCP connection (or did not answer in time)."""


@dataclass(slots=True)
class Handshake:
    """The server's answer to an upgrade request."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def accepted(self) -> bool:
        return self.status == 101

    def describe(self) -> str:
        if self.accepted:
            proto = self.headers.get("sec-websocket-protocol")
            return "101 Switching Protocols" + (f" (subprotocol {proto})" if proto else "")
        body = self.body[:120].decode("utf-8", "replace").strip()
        return f"HTTP {self.status} {self.reason}" + (f": {body}" if body else "")


@dataclass(slots=True)
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE:
            return None
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else 1005


@dataclass(slots=True)
class RawWebSocket:
    """One connection. Create with :func:`open_connection`; always ``await close_transport()``."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    handshake: Handshake
    received: list[Frame] = field(default_factory=list)
    close_sent: bool = False

    async def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> None:
        """Write one frame exactly as given (no validation of the payload)."""
        if opcode == OP_CLOSE:
            self.close_sent = True
        self.writer.write(encode_frame(opcode, payload, fin=fin, mask=mask))
        await self.writer.drain()

    def write_frame_nowait(self, opcode: int, payload: bytes) -> None:
        """Buffer a frame without waiting for the socket to drain (a client that never reads)."""
        self.writer.write(encode_frame(opcode, payload))

    async def recv_frame(self, timeout: float) -> Frame:
        """The next frame, or :class:`ProbeConnectionError` on EOF / timeout."""
        try:
            frame = await asyncio.wait_for(read_frame(self.reader), timeout)
        except TimeoutError as exc:
            raise ProbeConnectionError(f"no frame within {timeout:g} s") from exc
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ProbeConnectionError("connection closed by the server") from exc
        self.received.append(frame)
        if frame.opcode == OP_CLOSE and not self.close_sent:
            # The one automatic reply: completing the close handshake lets the server free the
            # connection at once instead of waiting out its close timeout.
            self.close_sent = True
            self.writer.write(encode_frame(OP_CLOSE, frame.payload[:2]))
        return frame

    async def wait_close(self, timeout: float) -> Frame | None:
        """Read until a close frame (returned) or EOF (None), answering nothing, within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ProbeConnectionError(f"connection still open after {timeout:g} s")
            try:
                frame = await self.recv_frame(remaining)
            except ProbeConnectionError as exc:
                if "closed" in str(exc):
                    return None
                raise
            if frame.opcode == OP_CLOSE:
                return frame

    async def close_transport(self) -> None:
        """Close TCP now. Unsent data is discarded: a probe never waits on a server that stopped reading."""
        transport = self.writer.transport
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            self.writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + _mask(payload, key)


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    if length > MAX_READ_FRAME:
        raise ConnectionError(f"frame of {length} bytes is larger than the probe reads")
    key = await reader.readexactly(4) if second & 0x80 else b""
    payload = await reader.readexactly(length)
    if key:
        payload = _mask(payload, key)
    return Frame(first & 0x0F, payload, bool(first & 0x80))


async def open_connection(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    timeout: float,
    rcvbuf: int | None = None,
) -> RawWebSocket:
    """Open TCP (TLS for ``wss``), send the upgrade request and read the answer.

    The returned connection may hold a refused handshake: check ``handshake.accepted``. A
    ``Host`` entry in ``headers`` replaces the one derived from the URL.

    Raises:
        ProbeConnectionError: TCP connect failed or no HTTP answer within ``timeout``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    context = ssl.create_default_context() if parts.scheme == "wss" else None
    try:
        reader, writer = await asyncio.wait_for(_connect(parts.hostname, port, context, rcvbuf), timeout)
    except (OSError, TimeoutError) as exc:
        raise ProbeConnectionError(f"cannot connect to {parts.hostname}:{port}: {exc}") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = dict(headers or {})
    host = headers.pop("Host", None) or (
        parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    )
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        handshake = await asyncio.wait_for(_read_response(reader), timeout)
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
        writer.close()
        raise ProbeConnectionError(f"no HTTP answer to the upgrade: {exc!r}") from exc
    return RawWebSocket(reader, writer, handshake)


async def _connect(
    host: str, port: int, context: ssl.SSLContext | None, rcvbuf: int | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if rcvbuf is None:
        return await asyncio.open_connection(host, port, ssl=context, limit=MAX_HEADER_BYTES)
    # A small receive buffer set before connecting keeps the advertised window small, so what the
    # server writes to a client that does not read piles up on the server's side, where it shows.
    import socket

    info = (await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(info[0], info[1], info[2])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, info[4])
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname=host if context else None, limit=MAX_HEADER_BYTES
    )


async def _read_response(reader: asyncio.StreamReader) -> Handshake:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    _, status, *reason = status_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    if status != "101":
        length = int(headers.get("content-length", "0") or 0)
        if length:
            body = await reader.readexactly(min(length, 4096))
    return Handshake(int(status), reason[0] if reason else "", headers, body)
