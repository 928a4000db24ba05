"""Transport adapter behind an ASGI WebSocket endpoint: the host app's ASGI server owns the socket.

See ``transport/__init__.py`` for the contract and ``asgi.py`` (the package's) for the public
entry that mounts it. The host's ASGI server (uvicorn, hypercorn, daphne) accepts TCP, parses the
upgrade and frames; this adapter turns each ``websocket`` scope into the same calls a socket
adapter makes: :meth:`~.App.handshake_started`, :meth:`~.App.handshake` with a
:class:`~.HandshakeRequest` (plus the identity the host app vouched for), then either a refusal
or ``websocket.accept`` with the chosen subprotocol and ``await App.serve(link, admission)``;
``admission.release()`` runs whatever happens.

What changes with ASGI, and who does it instead:

* **Refusals.** With the ``websocket.http.response`` extension in ``scope["extensions"]``
  (uvicorn, hypercorn) the refusal is the front door's own HTTP answer (401, 403, 429, 503 with
  ``Retry-After``). Without it the only way to refuse is ``websocket.close`` before accepting,
  which ASGI servers turn into a bare 403; the close code is still chosen from the status
  (1008 policy, 1013 try later, 1011 otherwise) for servers that pass it on.
* **Heartbeats.** ASGI has no ping frames: the ASGI server pings and closes dead peers. uvicorn:
  ``--ws-ping-interval`` / ``--ws-ping-timeout`` set from ``WS_PING_INTERVAL_S`` /
  ``WS_PING_TIMEOUT_S`` (the README's command does). Pings *from* clients are answered by the ASGI
  server too, so the ping budget (4008) of the socket adapters has no equivalent here.
* **Payload cap.** Every message is checked against ``settings.max_payload_bytes`` here (close
  1009), whatever the ASGI server's own limit; set uvicorn's ``--ws-max-size`` to the same value
  so an oversized message is refused before it is buffered whole. ASGI delivers whole messages,
  so the fragment cap is the ASGI server's size limit.
* **Backpressure.** ``websocket.send`` returns once the ASGI server has written the frame into
  its socket buffer, and waits while that buffer is above its high-water mark (uvicorn: the
  ``websockets`` library's 64 KiB). A client that stops reading therefore stalls this link's
  writer, the connection's outbox fills, and the server's slow-consumer policy applies (4009 for
  durable channels, drop or coalesce for feeds), exactly as with the socket adapters. The
  write-buffer cut of the socket adapters is not needed: nothing is written without waiting.
* **Handshake caps.** :meth:`App.handshake_started` is called when the scope arrives (the ASGI
  server has read the request by then), so the unfinished-handshake caps bound handshakes the
  front door is deciding, and unfinished TCP handshakes are the ASGI server's
  (``--timeout-keep-alive``, ``--limit-concurrency``).
* **Compression.** uvicorn negotiates permessage-deflate unless ``--ws-per-message-deflate
  false``: it would compress every event once per subscriber (the socket adapters turn it off for
  encode-once fan-out), so the README's command turns it off.
* **Shutdown.** :meth:`AsgiTransport.stop` closes every connection with 1001 and waits for them,
  bounded by the grace; after it, the connections still open are cancelled.

**Socket.IO** (when step 2 rendered it, ``socketio/``). A ``websocket`` scope at
``settings.socketio_path`` (below the mount) goes through the same :meth:`AsgiTransport.handle`:
the front door admits it as a Socket.IO upgrade and the server runs the Engine.IO/Socket.IO
handshake over the :class:`AsgiLink`, or lends the link to a long-polling session's upgrade
(``sid=``). An ``http`` scope there is Engine.IO long-polling: :meth:`AsgiTransport.handle_polling`
reads it with the same bounds as the standalone listener's HTTP front (``http_front.py``): a body
of at most ``max_payload_bytes`` (413), no chunked bodies (411: Engine.IO clients send a
Content-Length), the body read within ``handshake_timeout_s`` and counted as an unfinished
handshake meanwhile; then the front door's :meth:`~..front_door.FrontDoor.polling_request`
answers it (Engine.IO errors, CORS for allowed origins, the sessions of ``socketio/polling.py``).
A held GET whose client goes away is given up at once (``http.disconnect``), as a closed TCP
connection is standalone. :meth:`AsgiTransport.stop` tells every polling session first.

Text messages: the server encodes once per codec and hands the same UTF-8 ``bytes`` to every
subscriber, but ASGI wants ``str`` for a text frame. The last decoded message is kept (one entry,
by identity), so a fan-out to N subscribers decodes once, not N times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..auth import Identity
from . import Admission, App, HandshakeRequest, HttpResponse, LinkClosed

if TYPE_CHECKING:
    from ..settings import Settings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Authenticate = Callable[[Scope], Awaitable[Identity | None]]
"""The host app's authentication of a WebSocket scope: an :class:`~..auth.Identity` (with a
``user``) admits the upgrade as that user; None lets the JWT decide. Raising refuses it (500).
Re-exported by the package's ``asgi.py``, where the host app takes it from."""

HTTP_RESPONSE_EXTENSION = "websocket.http.response"
MAX_LENGTH_DIGITS = 12
"""A longer ``Content-Length`` of a long-polling POST is refused as malformed (400), as standalone."""

_TRANSPORTS: weakref.WeakKeyDictionary[Any, AsgiTransport] = weakref.WeakKeyDictionary()


def transport_of(app: App) -> AsgiTransport | None:
    """The :class:`AsgiTransport` the server ``app`` created at start, or None before that."""
    return _TRANSPORTS.get(app)


def route_path(scope: Scope) -> str:
    """The scope's path below the mount point, as Starlette's ``Mount`` computes it.

    Starlette (and FastAPI) keep the full path in ``scope["path"]`` and the mount prefix in
    ``scope["root_path"]``; other routers strip the prefix from ``path`` instead. Both give the
    endpoint's own path here.
    """
    path = str(scope.get("path", "")) or "/"
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def handshake_request(scope: Scope, identity: Identity | None = None) -> HandshakeRequest:
    """The :class:`~.HandshakeRequest` of an ASGI ``websocket`` (or ``http``) scope."""
    client = scope.get("client")
    return HandshakeRequest(
        path=route_path(scope),
        query=bytes(scope.get("query_string", b"")).decode("latin-1"),
        headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())),
        remote_ip=str(client[0]) if client else "",
        identity=identity,
    )


def close_code_for(status: int) -> int:
    """The close code that stands for an HTTP refusal when it cannot be sent as HTTP."""
    if status in (429, 503):
        return 1013  # try again later
    if 400 <= status < 500:
        return 1008  # policy: origin, token, subprotocol
    return 1011


class AsgiLink:
    """:class:`~.Link` over one accepted ASGI WebSocket (its ``receive`` and ``send``)."""

    __slots__ = ("_closing", "_code", "_receive", "_send", "_transport")

    def __init__(self, transport: AsgiTransport, receive: Receive, send: Send) -> None:
        self._transport = transport
        self._receive = receive
        self._send = send
        self._code: int | None = None
        self._closing = False

    async def recv(self) -> bytes | str:
        if self._code is not None:
            raise LinkClosed(self._code)
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            data: bytes | str = text if text is not None else message.get("bytes") or b""
            if self._transport.too_big(data):
                self._transport.app.connection_cut(1009, "message too big")
                await self.close(1009, "message too big")
                raise LinkClosed(1009, "message too big")
            return data
        if kind == "websocket.disconnect":
            if self._code is None:
                self._code = int(message.get("code", 1005))
            raise LinkClosed(self._code, str(message.get("reason") or ""))
        raise LinkClosed(1002, f"unexpected ASGI message {kind!r}")

    async def send(self, data: bytes, *, text: bool) -> None:
        if self._code is not None or self._closing:
            raise LinkClosed(self._code)
        message: Message = (
            {"type": "websocket.send", "text": self._transport.decode(data)}
            if text
            else {"type": "websocket.send", "bytes": data}
        )
        try:
            await self._send(message)
        except (OSError, RuntimeError) as exc:  # uvicorn: ClientDisconnected (an OSError); others RuntimeError
            self._code = self._code or 1006
            raise LinkClosed(self._code) from exc

    async def close(self, code: int, reason: str) -> None:
        if self._closing or self._code is not None:
            return
        self._closing = True
        try:
            # Bounded: the ASGI server waits for the peer's close frame (and for buffer room to
            # write ours); a peer that never reads must not hold the connection past the timeout.
            async with asyncio.timeout(self._transport.settings.close_timeout_s):
                await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})
        except (OSError, RuntimeError, TimeoutError):
            pass
        self._code = code

    @property
    def close_code(self) -> int | None:
        return self._code


class AsgiTransport:
    """:class:`~.Transport` whose connections arrive as ASGI scopes (:meth:`handle`), not on a socket."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.max_payload = settings.max_payload_bytes
        self._links: dict[AsgiLink, asyncio.Task[Any] | None] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._last_bytes: bytes | None = None
        self._last_text = ""
        _TRANSPORTS[app] = self

    async def start(self) -> tuple[str, int]:
        """Nothing to listen on: the host's ASGI server owns the socket; ("", 0) says so."""
        return "", 0

    async def stop(self, grace_s: float) -> None:
        """Close every connection with 1001 and wait for them, within ``grace_s``; those left then
        are cancelled (their cleanup still runs). New scopes are refused meanwhile (503)."""
        self._stopping = True
        polling = self.polling
        if polling is not None:  # Engine.IO's close on every session's pending (or next) GET
            await polling.close_all(1001, "server shutting down")
        links = list(self._links)
        if not links:
            return
        try:
            async with asyncio.timeout(grace_s):
                await asyncio.gather(*(link.close(1001, "server shutting down") for link in links))
                await self._idle.wait()
        except TimeoutError:
            left = [task for task in self._links.values() if task is not None and not task.done()]
            logger.warning("shutdown grace period over; cancelling %d connections", len(left))
            for task in left:
                task.cancel()

    # -- Socket.IO long-polling (see the module docstring) -----------------------------------------

    @property
    def polling(self) -> Any:
        """The server's long-polling sessions (``socketio/polling.py``), None when not served."""
        return getattr(getattr(self.app, "front_door", None), "polling", None)

    async def handle_polling(
        self, scope: Scope, receive: Receive, send: Send, authenticate: Authenticate | None = None
    ) -> None:
        """Answer one ``http`` scope at the Socket.IO path (Engine.IO long-polling)."""
        front: Any = getattr(self.app, "front_door", None)
        method = str(scope.get("method", "GET"))
        request = handshake_request(scope)
        if front is None or front.polling is None:  # WS_SOCKETIO_POLLING=false: WebSocket only
            refused = front._sio.check_query(request.query) if front is not None else None
            await respond(send, refused if isinstance(refused, HttpResponse) else _bad_polling_request())
            return
        ip = request.remote_ip
        if not self.app.handshake_started(ip):
            await respond(send, HttpResponse(503, b"too many handshakes in progress\n", headers=(("Retry-After", "5"),)))
            return
        try:
            body = await self._read_body(scope, receive)
            if isinstance(body, HttpResponse):
                logger.info("HTTP request refused: %s", body.body.decode().strip(), extra={"event": "refused", "status": body.status})
                await respond(send, body, close=True)  # the body left unread must not be taken for a request
                return
            if body is None:
                return  # the client left
            if authenticate is not None and method == "GET" and "sid" not in parse_qs(request.query):
                try:  # a session opens: the host app's own authentication, as for an upgrade
                    identity = await authenticate(scope)
                except Exception:
                    logger.exception("the host app's authenticate hook failed")
                    await respond(send, HttpResponse(500, b"authentication failed\n"))
                    return
                if identity is not None:
                    request = handshake_request(scope, identity)
        finally:
            self.app.handshake_ended(ip)
        response = await _unless_gone(front.polling_request(method, request, body), receive)
        if response is not None:
            await respond(send, response)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | HttpResponse | None:
        """The request's body, a refusal (411, 400, 413, 408), or None: the client left."""
        headers = scope.get("headers", ())
        if any(k.lower() == b"transfer-encoding" for k, _ in headers):
            return HttpResponse(411, b"chunked bodies are not accepted: send a Content-Length\n")
        lengths = [bytes(v) for k, v in headers if k.lower() == b"content-length"]
        if len(lengths) > 1 or (lengths and (not lengths[0].isdigit() or len(lengths[0]) > MAX_LENGTH_DIGITS)):
            return HttpResponse(400, b"bad Content-Length\n")
        limit = self.max_payload
        if lengths and int(lengths[0]) > limit:
            return HttpResponse(413, f"body over the {limit}-byte limit\n".encode())
        body = bytearray()
        try:
            async with asyncio.timeout(self.settings.handshake_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    body += message.get("body", b"")
                    if len(body) > limit:
                        return HttpResponse(413, f"body over the {limit}-byte limit\n".encode())
                    if not message.get("more_body", False):
                        return bytes(body)
        except TimeoutError:
            return HttpResponse(408, b"request body too slow\n")

    # -- per message -------------------------------------------------------------------------------

    def too_big(self, data: bytes | str) -> bool:
        limit = self.max_payload
        if len(data) > limit:
            return True
        # A str counts characters: only one that could pass the limit in UTF-8 is encoded.
        return isinstance(data, str) and len(data) * 4 > limit and len(data.encode()) > limit

    def decode(self, data: bytes) -> str:
        """``data`` as ``str``; the same ``bytes`` object sent to many links is decoded once."""
        if data is self._last_bytes:
            return self._last_text
        text = data.decode()
        self._last_bytes, self._last_text = data, text
        return text

    # -- per connection ----------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send, authenticate: Authenticate | None = None) -> None:
        """Run one ``websocket`` scope: handshake, then the connection until it closes."""
        request = handshake_request(scope)
        ip = request.remote_ip
        if not self.app.handshake_started(ip):
            await refuse(scope, send, HttpResponse(503, b"too many handshakes in progress\n", headers=(("Retry-After", "5"),)))
            return
        admission: Admission | None = None
        accepted = False
        try:
            first = await receive()
            if first["type"] != "websocket.connect":
                return  # the client left before the handshake
            identity = None
            if authenticate is not None:
                try:
                    identity = await authenticate(scope)
                except Exception:
                    logger.exception("the host app's authenticate hook failed")
                    await refuse(scope, send, HttpResponse(500, b"authentication failed\n"))
                    return
            if identity is not None:
                request = handshake_request(scope, identity)
            result = self.app.handshake(request)
            if isinstance(result, HttpResponse):
                await refuse(scope, send, result)
                return
            admission = result
            if self._stopping:
                await refuse(scope, send, HttpResponse(503, b"server is shutting down\n", headers=(("Retry-After", "5"),)))
                return
            await send({"type": "websocket.accept", "subprotocol": admission.subprotocol})
            accepted = True
        except (OSError, RuntimeError):
            return  # gone during the handshake (uvicorn: ClientDisconnected)
        finally:
            self.app.handshake_ended(ip)
            if admission is not None and not accepted:
                admission.release()
        if admission is not None and accepted:
            await self._serve(receive, send, admission)

    async def _serve(self, receive: Receive, send: Send, admission: Admission) -> None:
        link = AsgiLink(self, receive, send)
        task = asyncio.current_task()
        self._links[link] = task
        self._idle.clear()
        try:
            await self.app.serve(link, admission)
        except asyncio.CancelledError:
            if not self._stopping or task is None:
                raise
            task.uncancel()  # our own cancel at the end of the grace: a normal end for the ASGI server
        finally:
            admission.release()
            del self._links[link]
            if not self._links:
                self._idle.set()


def _bad_polling_request() -> HttpResponse:
    return HttpResponse(400, b'{"code":3,"message":"Bad request"}', "application/json")


async def _unless_gone(work: Awaitable[HttpResponse], receive: Receive) -> HttpResponse | None:
    """``work``'s answer, or None once the client has disconnected (``work`` is then cancelled: a
    held GET gives its place back, what it would have taken stays queued for the next one)."""
    answer: asyncio.Future[HttpResponse] = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    gone = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((answer, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not answer.done():
            answer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answer
    if answer.cancelled():
        return None
    try:
        return answer.result()
    except Exception:
        logger.exception("long-polling request failed")
        return HttpResponse(500, b"internal error\n")


async def respond(send: Send, response: HttpResponse, *, head: bool = False, close: bool = False) -> None:
    """Send ``response`` as the answer to an ``http`` scope (not cached: polling answers are live);
    ``close``: the ASGI server closes the connection after it."""
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
        (b"cache-control", b"no-store"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers),
        *([(b"connection", b"close")] if close else []),
    ]
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else response.body})


async def refuse(scope: Scope, send: Send, response: HttpResponse) -> None:
    """Refuse the upgrade with ``response``: as HTTP where the ASGI server offers it, else a close."""
    with contextlib.suppress(OSError, RuntimeError):
        if HTTP_RESPONSE_EXTENSION in (scope.get("extensions") or {}):
            headers = [
                (b"content-type", response.content_type.encode()),
                (b"content-length", str(len(response.body)).encode()),
                *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers),
            ]
            await send({"type": "websocket.http.response.start", "status": response.status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": response.body})
        else:
            reason = response.body.decode("utf-8", "replace").strip()[:120]
            await send({"type": "websocket.close", "code": close_code_for(response.status), "reason": reason})
