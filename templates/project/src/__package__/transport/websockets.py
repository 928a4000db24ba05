"""Transport adapter over the ``websockets`` library (asyncio API). The only module touching sockets.

See ``transport/__init__.py`` for the contract. permessage-deflate is off: it would compress every
frame once per connection and defeat encode-once fan-out, and it costs memory per connection.

``websockets`` answers pings itself and writes the pongs without waiting for the socket to drain,
and counts bytes per message but not frames: :class:`GuardedConnection` adds the ping budget, the
write-buffer bound (checked once per chunk read, after websockets wrote its automatic replies),
the fragment cap and the unfinished-handshake caps. The per-frame cost is one type check and two
identity comparisons.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State
from websockets.typing import Subprotocol

from ..limits import TokenBucket
from . import Admission, App, HandshakeRequest, HttpResponse, LinkClosed
from .http_front import front_factory, polling_front, stop_polling

if TYPE_CHECKING:
    from ..settings import Settings

logger = logging.getLogger(__name__)

class WebSocketsLink:
    """:class:`~.Link` over a ``websockets`` server connection."""

    __slots__ = ("_ws",)

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws

    async def recv(self) -> bytes | str:
        try:
            return await self._ws.recv()
        except ConnectionClosed as exc:
            raise LinkClosed(_code(exc), exc.rcvd.reason if exc.rcvd else "") from exc

    async def send(self, data: bytes, *, text: bool) -> None:
        try:
            await self._ws.send(data, text=text)
        except ConnectionClosed as exc:
            raise LinkClosed(_code(exc)) from exc

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    def stop_keepalive(self) -> None:
        """Stop websockets' own pings on this connection: a protocol on top runs its heartbeat
        (Socket.IO's Engine.IO ping, ``socketio/session.py``), and two per connection cost a core
        at 10,000 idle connections (bench/RESULTS.md, Socket.IO section)."""
        task = self._ws.keepalive_task
        if task is not None:
            task.cancel()


def _code(exc: ConnectionClosed) -> int | None:
    frame = exc.sent or exc.rcvd
    return frame.code if frame is not None else None


_OP_CONT = Opcode.CONT
_OP_PING = Opcode.PING
_OPEN = State.OPEN


class GuardedConnection(ServerConnection):
    """A ``ServerConnection`` that enforces what ``websockets`` leaves to the application.

    :meth:`WebSocketsTransport.start` subclasses it with :attr:`owner` set.
    """

    owner: ClassVar[WebSocketsTransport]
    _gated_ip: str | None = None
    _pings: TokenBucket | None = None
    _ping_violations = 0
    _fragments = 0
    _cut = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        if self.owner.app.handshake_started(ip):
            self._gated_ip = ip
        else:
            self.transport.abort()  # too many unfinished handshakes: no HTTP answer, no buffers

    def handshake_over(self) -> None:
        ip, self._gated_ip = self._gated_ip, None
        if ip is not None:
            self.owner.app.handshake_ended(ip)

    def connection_lost(self, exc: Exception | None) -> None:
        self.handshake_over()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.get_write_buffer_size() > self.owner.max_buffered and not self._cut:
            # Pongs (and close frames) are written without waiting for the socket to drain: a
            # client that pings and never reads would grow this buffer without end.
            self._cut = True
            self.owner.app.connection_cut(4009, "write buffer full")
            self.transport.abort()

    def process_event(self, event: Event) -> None:
        if type(event) is Frame:
            opcode = event.opcode
            if opcode is _OP_CONT:
                self._fragments += 1
                if self._fragments > self.owner.max_fragments:
                    self._fail(1009, "too many fragments")
                    return
            elif opcode is _OP_PING:
                self._on_ping()
            elif not event.fin:
                self._fragments = 1
        super().process_event(event)

    def _on_ping(self) -> None:
        s = self.owner.settings
        now = self.loop.time()
        bucket = self._pings
        if bucket is None:  # created on the first ping: most connections never send one
            bucket = self._pings = TokenBucket(s.rate_per_s, s.rate_burst, now)
        if bucket.take(now) > 0.0:
            self._ping_violations += 1
            if self._ping_violations >= s.rate_violations_before_close:
                self._fail(4008, "too many pings")

    def _fail(self, code: int, reason: str) -> None:
        if self.protocol.state is _OPEN:
            self.owner.app.connection_cut(code, reason)
            self.protocol.fail(code, reason)
            self.send_data()
            # Stop reading a flooder (what it sends now is discarded anyway), and end the
            # connection after close_timeout_s: websockets only times a close out while something
            # awaits a send, so a peer that never answers the close frame would keep the socket.
            self.transport.pause_reading()
            self.loop.call_later(self.owner.settings.close_timeout_s, self.transport.abort)


class WebSocketsTransport:
    """:class:`~.Transport` built on ``websockets.asyncio.server.serve``."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.max_buffered = settings.max_buffered_bytes
        self.max_fragments = settings.max_fragments
        self._server: Server | None = None
        self._admissions: dict[ServerConnection, Admission] = {}
        self._fronts: set[Any] = set()
        """HTTP fronts (``http_front.py``) still reading or serving long-polling requests."""

    async def start(self) -> tuple[str, int]:
        s = self.settings
        connection_class: Any = type("Connection", (GuardedConnection,), {"owner": self})
        front = polling_front(self.app)
        if front is not None:  # Engine.IO long-polling: an HTTP front reads each first request
            connection_class = front_factory(connection_class, front, s, self._fronts)
        self._server = await serve(
            self._handler,
            s.host,
            s.port,
            create_connection=connection_class,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression=None,
            max_size=s.max_payload_bytes,
            open_timeout=s.handshake_timeout_s,
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            close_timeout=s.close_timeout_s,
            server_header=None,
            # Several workers (workers.py) each listen on the same port; the kernel spreads accepts.
            reuse_port=s.workers > 1,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def stop(self, grace_s: float) -> None:
        """Close every connection with 1001, then stop listening: until they are gone, ``/readyz``
        still answers (503) and new upgrades are refused by the server (503)."""
        server = self._server
        if server is None:
            return
        front = polling_front(self.app)
        try:
            async with asyncio.timeout(grace_s):
                if front is not None:
                    await stop_polling(front, self._fronts)
                closing = [connection.close(1001, "server shutting down") for connection in server.connections]
                await asyncio.gather(*closing, return_exceptions=True)
                server.close(close_connections=True)
                await server.wait_closed()
        except TimeoutError:
            server.close(close_connections=False)
            logger.warning("shutdown grace period over; aborting %d connections", len(server.connections))
            for connection in server.connections:
                connection.transport.abort()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if isinstance(connection, GuardedConnection):
            connection.handshake_over()
        path, _, query = request.path.partition("?")
        remote = connection.remote_address
        handshake = HandshakeRequest(
            path=path,
            query=query,
            headers=tuple(request.headers.raw_items()),
            remote_ip=str(remote[0]) if remote else "",
        )
        result = self.app.handshake(handshake)
        if isinstance(result, HttpResponse):
            return _response(result)
        self._admissions[connection] = result

        def lost(_: object) -> None:
            admission = self._admissions.pop(connection, None)
            if admission is not None:
                admission.release()
            result.release()

        connection.connection_lost_waiter.add_done_callback(lost)
        return None

    def _select_subprotocol(
        self, connection: ServerConnection, subprotocols: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        connection = getattr(connection, "inner", connection)  # behind an HTTP front (http_front.py)
        admission = self._admissions.get(connection)
        if admission is None or admission.subprotocol is None:
            return None
        return Subprotocol(admission.subprotocol)

    async def _handler(self, connection: ServerConnection) -> None:
        admission = self._admissions.pop(connection, None)
        if admission is None:  # cannot happen: process_request admitted it
            await connection.close(1011, "internal error")
            return
        try:
            await self.app.serve(WebSocketsLink(connection), admission)
        finally:
            admission.release()


def _response(result: HttpResponse) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(result.body))),
            ("Content-Type", result.content_type),
            *result.headers,
        ]
    )
    return Response(result.status, http.HTTPStatus(result.status).phrase, headers, result.body)
