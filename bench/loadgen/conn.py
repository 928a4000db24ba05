"""Client connections of the load generator, whose callbacks do the whole job (no task per message).

Two transports carry one :class:`Session` (the dialect-level behaviour: setup, request/answer
matching, the hot-path counters):

- :class:`Conn`, a picows client. ``on_data`` is swapped between a setup handler (futures, used
  while connecting and subscribing) and a lean hot-path handler, so steady-state cost per frame is
  one bound-method call, one payload copy and a substring test.
- ``raw.RawConn``, a bare asyncio protocol for nine fan-out subscribers in ten: it stops framing
  once subscribed and counts deliveries in whole reads (it samples latency only in the low-rate
  passes, from reads it keeps and parses afterwards).

The workloads report this process's CPU so a reader can check that it was not the bottleneck.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from time import monotonic_ns
from typing import Protocol

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from wire import Dialect, delivery_time, is_delivery

_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE


class Session:
    """What a client connection does with whole messages, whatever carries them.

    A transport subclass calls ``on_data`` with each text message and provides ``send`` and
    ``close``; ``on_data`` starts as the opening handler and is replaced by the workload once setup
    is done.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.reply: asyncio.Future[bytes] | None = None
        self.closed = False
        self.on_data: Callable[[bytes], None] = self._opening
        # counters the workloads read
        self.count = 0
        self.samples: list[int] | None = None
        self.intended: deque[int] = deque()
        self.group = 0

    def latencies(self) -> list[int]:
        """Latency samples taken since ``samples`` was set to a list; stops sampling."""
        found, self.samples = self.samples or [], None
        return found

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _connected(self) -> None:
        """The upgrade succeeded: the wsforge dialect needs nothing more before it is ready."""
        if self.dialect.name == "wsforge":
            self.ready.set_result(None)
            self.on_data = self._setup

    def _disconnected(self) -> None:
        self.closed = True
        for fut in (self.ready, self.reply):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError("disconnected"))

    # setup ----------------------------------------------------------------------------------
    def _opening(self, data: bytes) -> None:
        ready, answer = self.dialect.on_open(data)
        if answer is not None:
            self.send(answer)
        if ready and not self.ready.done():
            self.on_data = self._setup
            self.ready.set_result(None)

    def _setup(self, data: bytes) -> None:
        answer = self.dialect.control_reply(data)
        if answer is not None:
            self.send(answer)
        elif self.reply is not None and not self.reply.done() and not is_delivery(data):
            self.reply.set_result(data)

    async def call(self, frame: bytes, timeout: float) -> bytes:
        """Send one request during setup and wait for the next non-event frame (its answer)."""
        self.reply = self.loop.create_future()
        self.send(frame)
        return await asyncio.wait_for(self.reply, timeout)

    # hot paths ------------------------------------------------------------------------------
    def count_deliveries(self, on_deliveries: Callable[[int], None]) -> None:
        """Count each delivered event, and sample its latency while ``samples`` is a list."""
        control = self.dialect.control_reply

        def handler(data: bytes) -> None:
            if is_delivery(data):
                self.count += 1
                if self.samples is not None:
                    self.samples.append(monotonic_ns() - delivery_time(data))
                on_deliveries(1)
            else:
                answer = control(data)
                if answer is not None:
                    self.send(answer)

        self.on_data = handler

    def count_replies(self, on_reply: Callable[[Session], None]) -> None:
        control = self.dialect.control_reply

        def handler(data: bytes) -> None:
            answer = control(data)
            if answer is not None:
                self.send(answer)
                return
            self.count += 1
            on_reply(self)

        self.on_data = handler


class Conn(Session, WSListener):
    """A picows client connection."""

    def __init__(self, dialect: Dialect) -> None:
        Session.__init__(self, dialect)
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._connected()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _TEXT:
            self.on_data(frame.get_payload_as_bytes())
        elif frame.msg_type == _CLOSE:
            self.closed = True
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._disconnected()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.send(_TEXT, data)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.send_close()
            self.transport.disconnect()


async def open_conn(dialect: Dialect, host: str, port: int, path: str, timeout: float) -> Conn:
    holder: list[Conn] = []

    def factory() -> Conn:
        conn = Conn(dialect)
        holder.append(conn)
        return conn

    await asyncio.wait_for(
        ws_connect(
            factory,
            f"ws://{host}:{port}{path}",
            websocket_handshake_timeout=timeout,
            read_buffer_init_size=4096,
        ),
        timeout,
    )
    conn = holder[0]
    await asyncio.wait_for(conn.ready, timeout)
    return conn


class Opener(Protocol):
    def __call__(
        self, dialect: Dialect, host: str, port: int, path: str, timeout: float
    ) -> Awaitable[Session]: ...


async def open_many(n: int, make: Callable[[int], Awaitable[Session]], concurrency: int) -> list[Session]:
    """Open ``n`` connections, at most ``concurrency`` handshakes in flight, keeping their order."""
    sem = asyncio.Semaphore(concurrency)
    out: list[Session | None] = [None] * n

    async def one(i: int) -> None:
        async with sem:
            out[i] = await make(i)

    await asyncio.gather(*(one(i) for i in range(n)))
    return [c for c in out if c is not None]
