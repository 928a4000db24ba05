"""An HTTP/1.1 front on the listener, for the requests a WebSocket library cannot serve.

Engine.IO long-polling (``socketio/polling.py``) needs POST bodies and GETs held open on a
kept-alive connection; ``websockets`` and ``picows`` serve only body-less GETs that upgrade or get
one answer. :class:`HttpFront` is the asyncio protocol of each accepted TCP connection while its
first request is read: a long-polling request (``front.is_polling``) is answered here, and the
connection stays with this class (keep-alive, one request at a time); anything else (WebSocket
upgrades, health, metrics, static files) is handed, bytes read so far included, to the protocol
object the transport would have used (``inner``), which then sees exactly what it would have seen.

Only built when Socket.IO polling is served: other projects keep the transport's own listener.
Bounds: the request head is at most :data:`MAX_HEAD` bytes (431), a body at most
``max_payload_bytes`` (413), chunked bodies are refused (411: Engine.IO clients always send a
Content-Length), the first request must arrive within ``handshake_timeout_s`` and a kept-alive
connection idle longer than the poll hold time is closed. Errors close the connection after the
answer; nothing here raises into the event loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, cast

from . import HandshakeRequest, HttpResponse

logger = logging.getLogger(__name__)

MAX_HEAD: Final = 16 * 1024
MAX_HEADERS: Final = 100


class PollingFront(Protocol):
    """What the front asks the server (``front_door.py``)."""

    def is_polling(self, path: str, query: str) -> bool: ...

    def polling_request(self, method: str, request: HandshakeRequest, body: bytes) -> Awaitable[HttpResponse]: ...

    def handshake_started(self, remote_ip: str) -> bool: ...

    def handshake_ended(self, remote_ip: str) -> None: ...


class BadRequest(Exception):
    """The request cannot be read; ``status`` is the answer, then the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """Method, target and headers of one request head (without its final CRLF CRLF).

    Raises:
        BadRequest: not an HTTP/1.1 request head this server reads.
    """
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest(400, "bad request head") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].startswith("/"):
        raise BadRequest(400, "bad request line")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, "too many headers")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or not name.isascii():
            raise BadRequest(400, "bad header line")
        headers.append((name, value.strip()))
    return parts[0], parts[1], headers


def render(response: HttpResponse, *, keep_alive: bool) -> bytes:
    """The bytes of one HTTP/1.1 response."""
    phrase = http.HTTPStatus(response.status).phrase
    lines = [
        f"HTTP/1.1 {response.status} {phrase}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


class HttpFront(asyncio.Protocol):
    """See the module docstring. One instance per TCP connection."""

    def __init__(
        self,
        inner: asyncio.Protocol,
        front: PollingFront,
        *,
        max_body: int,
        first_request_s: float,
        idle_s: float,
        on_open: Callable[[HttpFront], None] | None = None,
        on_close: Callable[[HttpFront], None] | None = None,
    ) -> None:
        self.inner = inner
        self.front = front
        self.max_body = max_body
        self.first_request_s = first_request_s
        self.idle_s = idle_s
        self._on_open = on_open
        self._on_close = on_close
        self.transport: asyncio.Transport | None = None
        self._ip = ""
        self._gated = False
        self._buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._busy: asyncio.Task[None] | None = None
        self._closing = False
        self._handed_off = False
        self._paused = False

    @property
    def protocol(self) -> Any:
        """The inner connection's: ``websockets`` checks ``connection.protocol`` in its
        subprotocol selection, and the "connection" it holds is this front."""
        return getattr(self.inner, "protocol", None)

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
        peer = tcp.get_extra_info("peername")
        self._ip = str(peer[0]) if peer else ""
        if not self.front.handshake_started(self._ip):
            tcp.abort()
            return
        self._gated = True
        self._arm(self.first_request_s)
        if self._on_open is not None:
            self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._busy is None:
            self._next()
        elif len(self._buffer) > MAX_HEAD + self.max_body and self.transport is not None:
            self._paused = True  # pipelined past one request while a poll is held: stop reading
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._ungate()
        self._disarm()
        busy = self._busy
        if busy is not None:
            busy.cancel()
        if self._on_close is not None:
            self._on_close(self)

    # -- requests -----------------------------------------------------------------------------

    def _next(self) -> None:
        """Read the next complete request off the buffer, if there is one, and start it."""
        if self._closing or self._handed_off:
            return
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                self._fail(431, "request head too large")
            return
        if end > MAX_HEAD:
            self._fail(431, "request head too large")
            return
        try:
            method, target, headers = parse_head(bytes(buffer[:end]))
        except BadRequest as exc:
            self._fail(exc.status, str(exc))
            return
        path, _, query = target.partition("?")
        if not self.front.is_polling(path, query):
            self._hand_off()
            return
        try:
            length = self._body_length(headers)
        except BadRequest as exc:
            self._fail(exc.status, str(exc))
            return
        start = end + 4
        if len(buffer) < start + length:
            return  # the body is still coming
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self._ungate()
        self._disarm()
        keep_alive = not any(k.lower() == "connection" and v.lower() == "close" for k, v in headers)
        request = HandshakeRequest(path=path, query=query, headers=tuple(headers), remote_ip=self._ip)
        self._busy = asyncio.get_running_loop().create_task(self._answer(method, request, body, keep_alive))

    def _body_length(self, headers: list[tuple[str, str]]) -> int:
        lengths = [v for k, v in headers if k.lower() == "content-length"]
        if any(k.lower() == "transfer-encoding" for k, _ in headers):
            raise BadRequest(411, "chunked bodies are not accepted: send a Content-Length")
        if not lengths:
            return 0
        if len(lengths) > 1 or not lengths[0].isdigit() or len(lengths[0]) > 12:
            raise BadRequest(400, "bad Content-Length")
        length = int(lengths[0])
        if length > self.max_body:
            raise BadRequest(413, f"body over the {self.max_body}-byte limit")
        return length

    async def _answer(self, method: str, request: HandshakeRequest, body: bytes, keep_alive: bool) -> None:
        try:
            response = await self.front.polling_request(method, request, body)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("long-polling request failed")
            response = HttpResponse(500, b"internal error\n")
        transport = self.transport
        if transport is None or self._closing:
            return
        keep_alive = keep_alive and response.status < 500
        transport.write(render(response, keep_alive=keep_alive))
        self._busy = None
        if not keep_alive:
            self._close()
            return
        if self._paused:
            self._paused = False
            transport.resume_reading()
        self._arm(self.idle_s)
        self._next()

    def _hand_off(self) -> None:
        """Give the connection to the transport's own protocol, bytes read so far included."""
        transport = self.transport
        assert transport is not None
        self._handed_off = True
        self._disarm()
        self._ungate()  # the inner protocol counts its unfinished handshake itself
        if self._on_close is not None:
            self._on_close(self)
        data, self._buffer = bytes(self._buffer), bytearray()
        inner: Any = self.inner
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if not data or transport.is_closing():
            return
        if isinstance(inner, asyncio.BufferedProtocol):  # picows reads into its own buffer
            view = memoryview(data)
            while view and not transport.is_closing():
                buffer = memoryview(inner.get_buffer(len(view)))
                n = min(len(buffer), len(view))
                buffer[:n] = view[:n]
                inner.buffer_updated(n)
                view = view[n:]
        else:
            inner.data_received(data)

    # -- helpers ------------------------------------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        self.front_refused(status, message)
        transport = self.transport
        if transport is not None and not self._closing:
            response = HttpResponse(status, f"{message}\n".encode())
            transport.write(render(response, keep_alive=False))
        self._close()

    def front_refused(self, status: int, message: str) -> None:
        logger.info("HTTP request refused: %s", message, extra={"event": "refused", "status": status})

    def _close(self) -> None:
        self._closing = True
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        """Shutdown: close this connection (a held poll's answer is dropped with it)."""
        self._closing = True
        if self._busy is not None:
            self._busy.cancel()
        if self.transport is not None:
            self.transport.close()

    def _arm(self, delay: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._busy is None and self.transport is not None:
            self.transport.abort()

    def _ungate(self) -> None:
        if self._gated:
            self._gated = False
            self.front.handshake_ended(self._ip)


def polling_front(app: Any) -> Any:
    """The server's front door when it serves Engine.IO long-polling (``socketio/polling.py``),
    else None: then the transport keeps its own listener, untouched."""
    front = getattr(app, "front_door", None)
    return front if getattr(front, "polling", None) is not None else None


async def stop_polling(front: Any, fronts: set[HttpFront]) -> None:
    """Graceful shutdown of long-polling: sessions get Engine.IO's close on their pending (or
    next) GET, then the kept-alive HTTP connections are closed."""
    await front.polling.close_all(1001, "server shutting down")
    await asyncio.sleep(0)  # let the held GETs write their answers
    for http_front in list(fronts):
        http_front.close()


def front_factory(
    inner_factory: Callable[..., Any], front: PollingFront, settings: Any, fronts: set[HttpFront]
) -> Callable[..., Any]:
    """Wrap a protocol factory (or ``websockets``' ``create_connection``) so that every connection
    starts behind an :class:`HttpFront`; ``fronts`` holds those serving long-polling."""

    def build(*args: Any, **kwargs: Any) -> HttpFront:
        return HttpFront(
            inner_factory(*args, **kwargs),
            front,
            max_body=settings.max_payload_bytes,
            first_request_s=settings.handshake_timeout_s,
            idle_s=settings.socketio_ping_interval_s + settings.socketio_ping_timeout_s + settings.handshake_timeout_s,
            on_open=fronts.add,
            on_close=fronts.discard,
        )

    return build
