"""Transport adapter over the ``websockets`` library (asyncio API). The only module touching sockets.

See ``transport/__init__.py`` for the contract. permessage-deflate is off: it would compress every
frame once per connection and defeat encode-once fan-out, and it costs memory per connection.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from . import Admission, App, HandshakeRequest, HttpResponse, LinkClosed

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


def _code(exc: ConnectionClosed) -> int | None:
    frame = exc.sent or exc.rcvd
    return frame.code if frame is not None else None


class WebSocketsTransport:
    """:class:`~.Transport` built on ``websockets.asyncio.server.serve``."""

    def __init__(self, app: App, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self._server: Server | None = None
        self._admissions: dict[ServerConnection, Admission] = {}

    async def start(self) -> tuple[str, int]:
        s = self._settings
        self._server = await serve(
            self._handler,
            s.host,
            s.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression=None,
            max_size=s.max_payload_bytes,
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            close_timeout=s.close_timeout_s,
            server_header=None,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def stop(self, grace_s: float) -> None:
        server = self._server
        if server is None:
            return
        server.close(close_connections=True)
        try:
            async with asyncio.timeout(grace_s):
                await server.wait_closed()
        except TimeoutError:
            logger.warning("shutdown grace period over; aborting %d connections", len(server.connections))
            for connection in server.connections:
                connection.transport.abort()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        remote = connection.remote_address
        handshake = HandshakeRequest(
            path=path,
            query=query,
            headers=tuple(request.headers.raw_items()),
            remote_ip=str(remote[0]) if remote else "",
        )
        result = self._app.handshake(handshake)
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
            await self._app.serve(WebSocketsLink(connection), admission)
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
