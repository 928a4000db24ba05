"""Transport adapter over ``picows`` (Cython WebSocket frames on asyncio). Touches sockets.

Same contract as ``transport/websockets.py`` (see ``transport/__init__.py``); picked by
``WS_TRANSPORT=picows`` when the throughput targets call for it. What makes it faster, and why
each shortcut stays RFC 6455-correct:

* The listening socket is the event loop's own (uvloop's by default, see ``WS_EVENT_LOOP``), not
  ``aiofastnet``'s (which ``ws_create_server`` picks when installed): on asyncio's loop, measured
  on the request/ack bench, aiofastnet's transport gained nothing here (52.5k vs 51.8k round trips
  per CPU-second; 79.7k vs 78.6k on another machine) and cost 4.8 KiB more per idle connection.
* The module compiles with mypyc (it is on the compiled build's list when picows is the
  transport): the listener stays a regular class (``native_class=False``), and values whose
  picows or typeshed annotations are wrong at runtime are read as ``Any``.
* One message to one connection (a reply, the fan-out's eager path, a batch of one) goes through
  picows' own ``send``: it frames in C and calls ``send()`` directly when nothing is buffered,
  ahead of anything asyncio's Python ``write`` would do. Both write to the same asyncio
  transport, whose buffer keeps the order when the socket is slow.
* Batched frames are built **once per message**: a server frame is unmasked, so its header
  depends only on the payload length and opcode and the same ``bytes`` are valid for every
  subscriber. :func:`frame` builds it; a per-loop-iteration cache keyed by the event object shares
  it between recipients.
* :meth:`PicowsLink.send_batch` writes every frame queued for a connection in one
  ``transport.write`` call: a concatenation of complete frames is itself a valid byte stream.
  The writer task drains a whole outbox per wake-up, so events of one loop iteration coalesce.
* A congested socket (``pause_writing``) makes senders wait for ``resume_writing``; nothing is
  written past the high-water mark, so the outbox and its backpressure policy do the dropping.
  :meth:`PicowsLink.ready` / :meth:`PicowsLink.write_frames` let the server's per-iteration flush
  write without a task; :meth:`PicowsLink.write_now` (a reply) and :meth:`PicowsLink.write_frame`
  (fan-out's eager path) write one message at once when nothing is queued before it. All of them
  refuse on a congested or closing link.
* ``PicowsLink.inline`` (set by the server) handles each message inside picows' frame callback
  when the server accepts it; declined messages, and all after them while any wait, go through the
  inbox to :meth:`PicowsLink.recv`, so the order of requests never changes.
* Frames from the client go through picows' parser (masking, lengths, control-frame rules,
  close codes); this module adds what picows leaves to the application: reserved bits,
  fragmentation order, UTF-8 of text messages, the payload and fragment caps (1009) and the
  heartbeat (1011).
* Pings are answered here, not by picows' automatic pong: each spends the connection's ping
  budget (a token bucket made on the first ping), and before answering, a write buffer past
  ``max_buffered_bytes`` cuts the connection (4009). A data frame pays nothing for either.
* ``_GatedProtocol`` counts TCP connections whose handshake is unfinished (per IP and in
  total, through the server) and cuts those over the caps before reading a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from mypy_extensions import mypyc_attr
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSProtocolError,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in picows' stubs

from ..limits import TokenBucket
from . import Admission, App, HandshakeRequest, HttpResponse, LinkClosed, gated_protocol
from .http_front import front_factory, polling_front, stop_polling

if TYPE_CHECKING:
    from ..settings import Settings

logger = logging.getLogger(__name__)
_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("picows.server"))
"""picows' log, shared by every connection. Given a ``logging.Logger`` picows builds a child logger
per connection (named after its file descriptor): 1.6 kB of Python heap for the connection's
life, measured with tracemalloc; given anything else it uses that as it is."""

READ_BUFFER_BYTES: Final = 2048
"""picows' initial read buffer per connection (its default is 16 KiB, most of an idle
connection's memory); it grows on demand for larger frames."""
_TEXT: Final = 0x1
_BINARY: Final = 0x2
_MSG_TEXT: Final = WSMsgType.TEXT
_MSG_BINARY: Final = WSMsgType.BINARY
_PACK16: Final = struct.Struct("!BBH").pack
_PACK64: Final = struct.Struct("!BBQ").pack
_ABNORMAL: Final = 1006
_NO_STATUS: Final = 0
"""What picows reports for a CLOSE frame without a status code."""
_EMPTY: Final[deque[Any]] = deque(maxlen=0)
"""Shared stand-in for an inbox never used (an empty deque is ~600 bytes per idle connection)."""


def frame(data: bytes, *, text: bool) -> bytes:
    """One complete, unmasked, unfragmented server frame (RFC 6455 §5.2) carrying ``data``.

    The three payload-length encodings: 7-bit up to 125 bytes, 16-bit up to 65535, else 64-bit.
    """
    first = 0x80 | (_TEXT if text else _BINARY)
    size = len(data)
    if size < 126:
        return bytes((first, size)) + data
    if size < 65536:
        return _PACK16(first, 126, size) + data
    return _PACK64(first, 127, size) + data


def close_frame(code: int | None, reason: str) -> bytes:
    """A server CLOSE frame; any code the contract uses (picows' enum lacks the 4xxx ones)."""
    if code is None:
        return b"\x88\x00"
    payload = code.to_bytes(2, "big") + reason.encode()[:123]
    return bytes((0x88, len(payload))) + payload


class _FrameCache:
    """Frames built during one loop iteration, shared by every recipient of the same event."""

    __slots__ = ("_entries", "_scheduled")

    def __init__(self) -> None:
        self._entries: dict[int, tuple[bytes, bytes]] = {}
        self._scheduled = False

    def get(self, data: bytes, text: bool) -> bytes:
        entry = self._entries.get(id(data))
        if entry is not None and entry[0] is data:
            return entry[1]
        framed = frame(data, text=text)
        if len(data) >= 64:  # small replies are unique per connection; caching them costs more
            self._entries[id(data)] = (data, framed)  # holding ``data`` keeps its id unique
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._clear)
        return framed

    def _clear(self) -> None:
        self._entries.clear()
        self._scheduled = False


_FRAMES: Final = _FrameCache()

_GatedProtocol: Final[Any] = gated_protocol(WSProtocol)
"""picows' protocol plus the unfinished-handshake caps; built in ``transport/__init__.py``, which
the mypyc build leaves alone (a compiled subclass loses its Cython base)."""


class PicowsLink:
    """:class:`~.InlineLink` over one picows connection; fed by :class:`_Listener`'s callbacks.

    With ``inline`` set (by the server), a message is handled inside picows' data callback: no
    future, no task wake-up per request. The inbox and its waiter exist only for what the server
    declines (a request still in progress, a full outbox) and for the websockets-style
    :meth:`recv` path.
    """

    __slots__ = (
        "_close_code",
        "_close_waiter",
        "_closing",
        "_drain",
        "_inbox",
        "_raw",
        "_recv_waiter",
        "awaiting_pong",
        "closed",
        "inline",
        "parts",
        "ping_due",
        "ping_violations",
        "pings",
        "transport",
    )

    def __init__(self, transport: WSTransport) -> None:
        self.transport = transport
        self._raw = transport.underlying_transport
        self.inline: Callable[[bytes | str], bool] | None = None
        self._inbox: deque[bytes | str] = _EMPTY  # replaced by a real deque on first use
        self._recv_waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._close_waiter: asyncio.Future[None] | None = None
        self._close_code: int | None = None
        self._closing = False
        self.closed = False
        self.awaiting_pong = False
        self.ping_due = asyncio.get_running_loop().time()
        self.pings: TokenBucket | None = None
        """The client's ping budget; made on its first ping (most clients never send one)."""
        self.ping_violations = 0
        self.parts: list[bytes] | None = None
        """Fragments of the message being received; None between messages. Here, not on the
        listener: a compiled class's attribute is a field read on every frame, a regular class's
        (the listener's) a dictionary lookup."""

    # -- fed by the listener ------------------------------------------------------------
    def feed(self, message: bytes | str) -> None:
        inbox = self._inbox
        if not inbox:
            inline = self.inline
            if inline is not None and inline(message):
                return
            if inbox is _EMPTY:
                inbox = self._inbox = deque()
        inbox.append(message)
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def lost(self, code: int | None) -> None:
        if self._close_code is None:
            self._close_code = code if code is not None else _ABNORMAL
        self.closed = True
        for fut in (self._recv_waiter, self._drain, self._close_waiter):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def pause(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- Link ---------------------------------------------------------------------------
    async def recv(self) -> bytes | str:
        while not self._inbox:
            if self.closed or self._closing:
                raise LinkClosed(self._close_code)
            self._recv_waiter = asyncio.get_running_loop().create_future()
            await self._recv_waiter
        inbox = self._inbox
        message = inbox.popleft()
        if not inbox:
            # Back to the shared empty one: a connection whose first frames came before the inline
            # handler (Socket.IO's CONNECT) would otherwise keep a 760-byte deque while idle.
            self._inbox = _EMPTY
        return message

    async def send(self, data: bytes, *, text: bool) -> None:
        await self._writable()
        self.transport.send(_MSG_TEXT if text else _MSG_BINARY, data)

    def write_now(self, data: bytes, text: bool) -> bool:
        """Write one frame now unless the socket is congested or closing (then: False, queue it)."""
        if not self.ready():
            return False
        self.transport.send(_MSG_TEXT if text else _MSG_BINARY, data)
        return True

    async def send_batch(self, batch: list[bytes], *, text: bool) -> None:
        """Send every message of ``batch`` in order, as whole frames, with one write."""
        await self._writable()
        self.write_frames(batch, text)

    def ready(self) -> bool:
        drain = self._drain
        return not (self.closed or self._closing or (drain is not None and not drain.done()))

    def write_frame(self, data: bytes, text: bool) -> bool:
        # picows frames it in C and calls send() itself when nothing is buffered: cheaper per
        # recipient than a shared pre-built frame through asyncio's Python write().
        drain = self._drain
        if self.closed or self._closing or (drain is not None and not drain.done()):
            return False
        self.transport.send(_MSG_TEXT if text else _MSG_BINARY, data)
        return True

    def write_frames(self, batch: list[bytes], text: bool) -> None:
        if len(batch) == 1:
            self.transport.send(_MSG_TEXT if text else _MSG_BINARY, batch[0])
        else:
            get = _FRAMES.get
            self._raw.write(b"".join([get(data, text) for data in batch]))

    async def _writable(self) -> None:
        if self.closed or self._closing:
            raise LinkClosed(self._close_code)
        drain = self._drain
        if drain is not None and not drain.done():
            await drain
            if self.closed:
                raise LinkClosed(self._close_code)

    async def close(self, code: int, reason: str, timeout: float = 5.0) -> None:
        if self.closed:
            return
        if not self._closing:
            self._closing = True
            self._close_code = code
            self._raw.write(close_frame(code, reason))
            self._close_waiter = asyncio.get_running_loop().create_future()
        waiter = self._close_waiter
        if waiter is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(waiter)
        self.transport.disconnect()

    @property
    def close_code(self) -> int | None:
        return self._close_code


@mypyc_attr(native_class=False)
class _Listener(WSListener):
    """Per-connection picows callbacks: frames -> link inbox, lifecycle -> server.

    In the mypyc build this stays a regular Python class with compiled methods: a native class
    cannot extend picows' Cython ``WSListener`` (the server crashes on the first connection).
    """

    def __init__(self, owner: PicowsTransport, admission: Admission) -> None:
        self.owner = owner
        self.admission = admission
        self.link: PicowsLink | None = None
        self.cut: PicowsLink | None = None
        """The link after a protocol error; its frames are no longer read."""
        self.part_type = WSMsgType.TEXT
        self.part_size = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        link = self.link = PicowsLink(transport)
        self.owner.opened(link, self.admission)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        link = self.link if self.link is not None else self.cut
        if link is not None:
            close = transport.close_handshake
            received = close.recv.code if close is not None and close.recv is not None else None
            link.lost(None if received is None else received.value)
            self.owner.links.discard(link)
        self.admission.release()

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.pause()

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.resume()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        link = self.link
        if link is None:
            return
        try:
            link.awaiting_pong = False  # any frame proves the peer is alive
            kind = frame.msg_type
            bits: Any = frame  # picows' stubs say bool, its frames hold ints: mypyc would reject them
            fin = bits.fin
            if bits.rsv1 or bits.rsv2 or bits.rsv3:
                raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "reserved bits set without an extension")
            parts = link.parts
            if kind == _MSG_TEXT and fin and parts is None:
                # The usual frame: one whole text message, already held to max_size by picows' parser.
                try:
                    text = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    raise WSProtocolError(WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text message") from None
                link.feed(text)
            elif kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
                if parts is not None:
                    raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
                size = frame.payload_size
                if size > self.owner.max_size:
                    raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
                if fin:
                    link.feed(_message(kind, frame.get_payload_as_bytes()))
                else:
                    self.part_type, self.part_size = kind, size
                    link.parts = [frame.get_payload_as_bytes()]
            elif kind == WSMsgType.CONTINUATION:
                if parts is None:
                    raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "continuation without a message")
                self.part_size += frame.payload_size
                if self.part_size > self.owner.max_size:
                    raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
                if len(parts) >= self.owner.max_fragments:
                    self.owner.app.connection_cut(1009, "too many fragments")
                    raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, "too many fragments")
                parts.append(frame.get_payload_as_bytes())
                if fin:
                    data, link.parts = b"".join(parts), None
                    link.feed(_message(self.part_type, data))
            elif kind == WSMsgType.PING:
                self._on_ping(transport, frame, link)
            elif kind == WSMsgType.CLOSE:
                self._on_close(transport, frame, link)
            # PONG only cleared awaiting_pong above.
        except WSProtocolError:
            # picows closes with its code but still hands over the frames already read: drop
            # them here, or a bomb of bad frames costs an exception (and a log line) per frame.
            self.link, self.cut, link.parts = None, link, None
            raise

    def _on_ping(self, transport: WSTransport, frame: WSFrame, link: PicowsLink) -> None:
        owner = self.owner
        if link._raw.get_write_buffer_size() > owner.max_buffered:
            # The client pings and does not read: every pong would stay in this buffer.
            owner.app.connection_cut(4009, "write buffer full")
            self.link, self.cut = None, link  # the frames already read behind this one are dropped
            link.lost(4009)
            transport.disconnect(graceful=False)
            return
        s = owner.settings
        now = asyncio.get_running_loop().time()
        bucket = link.pings
        if bucket is None:
            bucket = link.pings = TokenBucket(s.rate_per_s, s.rate_burst, now)
        if bucket.take(now) == 0.0:
            transport.send_pong(frame.get_payload_as_bytes())
            return
        # Over budget: no pong (RFC 6455 lets an endpoint skip pongs it is flooded with), and
        # after rate_violations_before_close of them, close 4008 like a message flood.
        link.ping_violations += 1
        if link.ping_violations == s.rate_violations_before_close:
            owner.app.connection_cut(4008, "too many pings")
            # Stop reading the flooder: parsing what it keeps sending would cost the CPU other
            # clients need. Its close reply is not awaited; close_timeout_s ends the connection.
            self.link, self.cut = None, link
            link._raw.pause_reading()
            owner.spawn(link.close(4008, "too many pings", s.close_timeout_s))

    def _on_close(self, transport: WSTransport, frame: WSFrame, link: PicowsLink) -> None:
        waiter = link._close_waiter
        if waiter is not None:  # our close was answered: the closing handshake is complete
            if not waiter.done():
                waiter.set_result(None)
            return
        code: int = frame.get_close_code().value
        if code != _NO_STATUS and not _valid_close_code(code):
            raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
        link.lost(None if code == _NO_STATUS else code)
        link._raw.write(close_frame(None if code == _NO_STATUS else code, ""))
        transport.disconnect()


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 §7.4; 1004-1006 and 1015 are reserved, never on the wire)."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def _message(kind: WSMsgType, data: bytes) -> bytes | str:
    if kind == WSMsgType.BINARY:
        return data
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise WSProtocolError(WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text message") from None


def _is_upgrade(request: WSUpgradeRequest) -> bool:
    headers = request.headers
    return (
        headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in headers.get("Connection", "").lower()
        and bool(headers.get("Sec-WebSocket-Key"))
        and headers.get("Sec-WebSocket-Version") == "13"
    )


class PicowsTransport:
    """:class:`~.Transport` on ``picows``: one asyncio server, one heartbeat task for all links."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.max_size = settings.max_payload_bytes
        self.max_fragments = settings.max_fragments
        self.max_buffered = settings.max_buffered_bytes
        self.links: set[PicowsLink] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._fronts: set[Any] = set()
        """HTTP fronts (``http_front.py``) still reading or serving long-polling requests."""

    async def start(self) -> tuple[str, int]:
        s = self.settings
        loop = asyncio.get_running_loop()
        # Several workers (workers.py) each listen on the same port; the kernel spreads accepts.
        factory: Any = self._protocol
        front = polling_front(self.app)
        if front is not None:  # Engine.IO long-polling: an HTTP front reads each first request
            factory = front_factory(self._protocol, front, s, self._fronts)
        self._server = await loop.create_server(
            factory, s.host, s.port, backlog=4096, reuse_port=s.workers > 1
        )
        self._heartbeat = asyncio.create_task(self._beat())
        server: Any = self._server  # uvloop's Server.sockets is a list, typeshed says tuple (mypyc checks)
        host, port = server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def _protocol(self) -> WSProtocol:
        """picows' own protocol, built as ``ws_create_server`` builds it, but with a listener
        factory that also knows the peer address (needed for per-IP caps at the handshake)."""
        holder: list[Any] = []
        s = self.settings
        proto = _GatedProtocol(
            None,  # host:port (client side only)
            None,  # path (client side only)
            False,  # is_client_side
            lambda request: self._on_request(request, holder[0]),
            _PICOWS_LOG,
            True,  # disconnect_on_exception: WSProtocolError from a callback closes with its code
            s.handshake_timeout_s,  # an unfinished handshake is closed after this
            False,  # auto ping: off, the heartbeat task pings and closes with 1011
            s.ping_interval_s,
            s.ping_interval_s,
            1,  # auto ping strategy (unused)
            False,  # auto pong: off, _Listener answers pings within the client's budget
            self.max_size,  # larger frames: picows closes with 1009 before buffering them
            None,  # extra headers (client side only)
            READ_BUFFER_BYTES,
        )
        proto.app = self.app
        holder.append(proto)
        return proto

    def _on_request(self, request: WSUpgradeRequest, proto: Any) -> WSUpgradeResponseWithListener:
        proto.handshake_over()
        raw_path = request.path.decode("latin-1")
        path, _, query = raw_path.partition("?")
        if path == self.settings.path and not _is_upgrade(request):
            return _http(
                HttpResponse(426, b"WebSocket upgrade required\n", headers=(("Upgrade", "websocket"),))
            )
        peer = proto.transport.underlying_transport.get_extra_info("peername")
        handshake = HandshakeRequest(
            path=path,
            query=query,
            headers=tuple(request.headers.items()),
            remote_ip=str(peer[0]) if peer else "",
        )
        result = self.app.handshake(handshake)
        if isinstance(result, HttpResponse):
            return _http(result)
        extra = [("Sec-WebSocket-Protocol", result.subprotocol)] if result.subprotocol else []
        response = WSUpgradeResponse.create_101_response(extra_headers=extra)
        return WSUpgradeResponseWithListener(response, _Listener(self, result))

    def opened(self, link: PicowsLink, admission: Admission) -> None:
        self.links.add(link)
        self.spawn(self._serve(link, admission))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, link: PicowsLink, admission: Admission) -> None:
        try:
            await self.app.serve(link, admission)
        except Exception:
            logger.exception("connection handler failed")
            await link.close(1011, "internal error", self.settings.close_timeout_s)
        finally:
            if not link.closed:
                await link.close(1000, "", self.settings.close_timeout_s)
            admission.release()

    async def _beat(self) -> None:
        """Ping every link each ``ping_interval_s``; close 1011 when no frame came back in time."""
        s = self.settings
        loop = asyncio.get_running_loop()
        tick = min(s.ping_interval_s, s.ping_timeout_s) / 2
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for link in list(self.links):
                if link.closed:
                    continue
                if link.awaiting_pong:
                    if now >= link.ping_due + s.ping_timeout_s:
                        link.awaiting_pong = False
                        task = loop.create_task(link.close(1011, "keepalive ping timeout", s.close_timeout_s))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                elif now >= link.ping_due + s.ping_interval_s:
                    link.transport.send_ping()
                    link.awaiting_pong = True
                    link.ping_due = now

    async def stop(self, grace_s: float) -> None:
        """Close every connection with 1001, then stop listening: until they are gone, ``/readyz``
        still answers (503) and new upgrades are refused by the server (503)."""
        server = self._server
        if server is None:
            return
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        front = polling_front(self.app)
        if front is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await stop_polling(front, self._fronts)
        closing = [
            asyncio.create_task(link.close(1001, "server shutting down", grace_s))
            for link in list(self.links)
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                if closing:
                    await asyncio.gather(*closing, return_exceptions=True)
                if self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
        server.close()
        for link in list(self.links):
            link.transport.disconnect(graceful=False)
        for task in list(self._tasks):
            task.cancel()


def _http(result: HttpResponse) -> WSUpgradeResponseWithListener:
    headers = [("Content-Type", result.content_type), *result.headers]
    if result.status >= 400:
        response = WSUpgradeResponse.create_error_response(result.status, result.body, extra_headers=headers)
    elif result.status == 200:
        response = WSUpgradeResponse.create_ok_response(result.body, extra_headers=headers)
    else:  # 3xx and other 2xx: build it by hand, picows only has helpers for the common cases
        response = WSUpgradeResponse.create_ok_response(result.body, extra_headers=headers)
        response.status = http.HTTPStatus(result.status)
    return WSUpgradeResponseWithListener(response, None)
