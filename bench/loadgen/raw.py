"""A bare asyncio WebSocket client that, once subscribed, counts deliveries per read, not per frame.

At fan-out rates of 10^5-10^6 deliveries/s a per-frame callback into Python is the load generator's
main cost, and on a 2-core machine the generator then limits the fastest servers it measures. A
subscriber in the saturation pass needs nothing from a delivery but the fact that it arrived, so
after setup :class:`RawConn` stops framing and counts the marker only a delivered event carries
(``wire.DELIVERY_MARKER``) in each read with ``bytes.count``. Server frames are never masked
(RFC 6455 §5.1), so the marker is visible in the raw stream. While ``samples`` is a list (the
low-rate latency passes), each read is also kept with its receive time; after the pass,
:meth:`RawConn.latencies` reads the publishers' send times that follow the marker, so that every
subscriber, not only one in ``--sample-every``, gives latency samples.

The price: in counting mode a connection cannot answer pings or see a close frame, and it never
returns to framing (where the next frame starts is unknown). The fan-out workload therefore keeps
one subscriber in ``--sample-every`` on picows to sample latency, lasts far less than the heartbeat
interval the bench gives it (``workloads.Workload.heartbeat``), and checks every count by its drain
(``undelivered_after_drain``), which would show a miscount.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic_ns
from typing import cast

from conn import Session
from rfc6455 import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    MarkerCounter,
    StampReader,
    encode_frame,
    handshake_request,
    parse_handshake_response,
)
from wire import DELIVERY_MARKER, Dialect

MAX_HEAD = 16 * 1024
"""Largest upgrade response accepted before the blank line."""


class RawConn(Session, asyncio.Protocol):
    def __init__(self, dialect: Dialect, host: str, port: int, path: str) -> None:
        Session.__init__(self, dialect)
        self.transport: asyncio.Transport | None = None
        self.request, self.accept = handshake_request(host, port, path)
        self.head = b""
        self.reader = FrameReader()
        self.feed: Callable[[bytes], None] = self._upgrading
        self.reads: list[tuple[int, bytes]] = []
        """(receive time, bytes) of each read while ``samples`` is a list; see :meth:`latencies`."""

    # asyncio callbacks ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass, only alike
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.feed(data)
        except Exception as exc:  # a broken upgrade or frame ends this connection, visibly
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disconnected()

    # modes ------------------------------------------------------------------------------------
    def _upgrading(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                raise ConnectionRefusedError("upgrade response too long")
            return
        parse_handshake_response(self.head[:end], self.accept)
        rest, self.head = self.head[end + 4 :], b""
        self.feed = self._framing
        self._connected()
        if rest:
            self._framing(rest)

    def _framing(self, data: bytes) -> None:
        for opcode, payload in self.reader.feed(data):
            if opcode in (TEXT, BINARY):
                self.on_data(payload)
            elif opcode == PING:
                self._write(encode_frame(PONG, payload))
            elif opcode == CLOSE:
                self.closed = True
                self._write(encode_frame(CLOSE, payload[:2]))
                if self.transport is not None:
                    self.transport.close()
                return

    def count_in_bulk(self, on_deliveries: Callable[[int], None]) -> None:
        """Stop framing: from now on every read is only searched for delivered events.

        Bytes already read but not yet framed are searched too, so no delivery is lost or counted
        twice at the switch.
        """
        counter = MarkerCounter(DELIVERY_MARKER)

        def counting(data: bytes) -> None:
            found = counter.feed(data)
            if found:
                self.count += found
                on_deliveries(found)
            if self.samples is not None:
                self.reads.append((monotonic_ns(), data))

        pending, self.reader.pending = self.reader.pending, b""
        self.feed = counting
        if pending:
            counting(pending)

    def latencies(self) -> list[int]:
        """Publish-to-receive time of every delivery read since sampling started; stops sampling.

        The send times are parsed here, after the pass, not in ``data_received``: the generator
        reads the subscribers one after another, so work per read there would delay the reads
        after it and show up in every subject's latency.
        """
        stamps = StampReader(DELIVERY_MARKER)  # a pass starts on a frame boundary: nothing to carry
        found = [received - sent for received, data in self.reads for sent in stamps.feed(data)]
        self.samples, self.reads = None, []
        return found

    # sending ----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self._write(encode_frame(TEXT, data))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self._write(encode_frame(CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()

    def _write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def _fail(self, exc: Exception) -> None:
        for fut in (self.ready, self.reply):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


async def open_raw(dialect: Dialect, host: str, port: int, path: str, timeout: float) -> RawConn:
    loop = asyncio.get_running_loop()
    _transport, conn = await asyncio.wait_for(
        loop.create_connection(lambda: RawConn(dialect, host, port, path), host, port), timeout
    )
    await asyncio.wait_for(conn.ready, timeout)
    return conn
