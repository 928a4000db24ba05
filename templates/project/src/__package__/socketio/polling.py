"""Engine.IO 4 HTTP long-polling, and its upgrade to WebSocket, as one :class:`~..transport.Link`.

Socket.IO clients start with ``transports: ["polling", "websocket"]`` by default: the first GET
opens a session (its answer is the OPEN packet, offering ``upgrades: ["websocket"]``), later GETs
fetch what the server queued (held until something is queued, packets joined by ``\\x1e``), POSTs
carry the client's packets; a binary packet (a Socket.IO attachment) is a ``b<base64>`` record in
either direction. :class:`PollingLink` turns that into the Link the server already runs
its ``dispatch.Session`` and :class:`~.session.SocketIOGate` on, so polling clients get the same
core, limits and auth as WebSocket ones; :class:`PollingSessions` keeps the sessions by ``sid`` and
answers the HTTP requests (``transport/http_front.py`` reads them off the socket).

The upgrade: a WebSocket to the Socket.IO path with the session's ``sid`` exchanges ``2probe`` /
``3probe``, the pending GET is answered (with what is queued, or ``6``, a noop) so the client can
pause polling, and on the client's ``5`` the link switches: whatever is still queued is written
first on the WebSocket, then everything goes through it. Nothing is lost or sent twice: every
packet is either in the GET's answer or written after it, once. Once the session has read the
packets its POSTs brought, the link hands the WebSocket to its owner (``on_switch``: the Socket.IO
link's :meth:`~.session.SocketIOLink.rebind`), which then reads and writes it directly, with the
server's fast paths when the WebSocket has them (picows): no task or queue in between.

Engine.IO's rules, enforced: a second GET while one is pending closes the session; an unknown
``sid`` gets HTTP 400 with ``{"code": 1, "message": "Session ID unknown"}``; a session whose
queue passes ``max_buffered_bytes`` (a client that stopped polling) is closed like a slow
WebSocket (counted as 4009); a session that stops polling misses its pong and is closed by the
heartbeat (``session.py``), its queue and slot released.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

import orjson

from ..protocol import CloseCode
from ..transport import Admission, HandshakeRequest, HttpResponse, Link, LinkClosed

if TYPE_CHECKING:
    from ..settings import Settings

logger = logging.getLogger(__name__.rpartition(".")[0].rpartition(".")[0] + ".server")

SEPARATOR: Final = b"\x1e"
"""Engine.IO 4 joins the packets of one polling payload with the record separator."""
BINARY: Final = b"b"
"""Prefix of a binary packet's record in a polling payload; the base64 of its bytes follows."""
NOOP: Final = b"6"
CLOSE: Final = b"1"
INBOX_PACKETS: Final = 64
"""Packets of POSTs not yet read by the session: a POST waits (its answer is delayed) past this."""
_UNKNOWN_SID: Final = 1
_BAD_METHOD: Final = 2
_BAD_REQUEST: Final = 3
_TEXT: Final = "text/plain; charset=UTF-8"
_RUNNING: set[asyncio.Task[Any]] = set()
_SWITCHED: Final = object()
"""Put in the inbox at the switch, behind the packets POSTs brought: the WebSocket takes over there."""


def engineio_error(code: int, message: str, status: int = 400) -> HttpResponse:
    """Engine.IO's error body, which client libraries report as it is."""
    return HttpResponse(status, orjson.dumps({"code": code, "message": message}), "application/json")


class PollingLink:
    """One Engine.IO session over long-polling (later, maybe, a WebSocket); see the module docstring."""

    upgrades: Final = ("websocket",)
    """Offered in the OPEN packet (``session.py`` reads it from the link)."""

    def __init__(
        self, sid: str, max_buffered: int, on_close: Callable[[PollingLink], None], post_wait_s: float = 10.0
    ) -> None:
        self.sid = sid
        self._post_wait_s = post_wait_s
        """How long a POST waits for room in a full inbox before the session is given up."""
        self._max_buffered = max_buffered
        self._on_close = on_close
        self._inbox: asyncio.Queue[bytes | str | object | None] = asyncio.Queue(INBOX_PACKETS)
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._poll: asyncio.Future[None] | None = None
        """The pending GET's wake-up, while one is held."""
        self._ws: Link | None = None
        self._close_code: int | None = None
        self.upgrading = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Resolved once the session is closed (the upgrade's WebSocket waits on it)."""
        self.on_switch: Callable[[Link], None] | None = None
        """Told the WebSocket once the session has read everything sent before it (the Socket.IO
        link sets it: from then on it uses the WebSocket itself)."""

    # -- Link ---------------------------------------------------------------------------------

    async def recv(self) -> bytes | str:
        item = await self._inbox.get()
        if item is _SWITCHED:  # every packet of the POSTs was read: the WebSocket's come next
            ws = cast(Link, self._ws)
            if self.on_switch is not None:
                self.on_switch(ws)
            self._inbox.put_nowait(_SWITCHED)  # any later recv() here reads the WebSocket too
            return await ws.recv()
        if item is None:
            self._inbox.put_nowait(None)  # every later recv() sees the close too
            raise LinkClosed(self._close_code, "session closed")
        return cast("bytes | str", item)

    async def send(self, data: bytes, *, text: bool) -> None:
        if self._close_code is not None:
            raise LinkClosed(self._close_code)
        ws = self._ws
        if ws is not None:
            await ws.send(data, text=text)
            return
        record = data if text else BINARY + base64.b64encode(data)
        self._outbox.append(record)
        self._outbox_bytes += len(record)
        if self._outbox_bytes > self._max_buffered:
            self._outbox.clear()
            self._outbox_bytes = 0
            await self.close(CloseCode.SLOW_CONSUMER, "polling client does not fetch its packets")
            raise LinkClosed(CloseCode.SLOW_CONSUMER)
        self._wake()

    async def close(self, code: int, reason: str) -> None:
        if self._close_code is not None:
            return
        self._close_code = code
        self._outbox.append(CLOSE)  # a pending or next GET tells the client
        self._wake()
        self._finish()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(LinkClosed):
                await ws.close(code, reason)

    @property
    def close_code(self) -> int | None:
        return self._close_code

    # -- HTTP side --------------------------------------------------------------------------

    async def poll(self, hold_s: float) -> HttpResponse:
        """A GET: what is queued now, or once something is, or a noop after ``hold_s``."""
        if self._poll is not None:  # Engine.IO: one GET at a time, else the session is broken
            await self.close(CloseCode.PROTOCOL_VIOLATION, "overlapping polls")
            return engineio_error(_BAD_REQUEST, "Bad request: a GET is already pending for this session")
        if not self._outbox and self._close_code is None and not self.upgrading:
            self._poll = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(hold_s):
                    await self._poll
            except TimeoutError:
                pass
            finally:
                self._poll = None
        return HttpResponse(200, self._take() or NOOP, _TEXT)

    async def post(self, body: bytes) -> HttpResponse:
        """A POST: its packets go to :meth:`recv`, in order; waits while the inbox is full."""
        if self._close_code is not None:
            return engineio_error(_UNKNOWN_SID, "Session ID unknown")
        if self._ws is not None:  # upgraded: packets come over the WebSocket only, in its order
            return engineio_error(_BAD_REQUEST, "Bad request: the session was upgraded to a WebSocket")
        try:
            text = body.decode()
        except UnicodeDecodeError:
            await self.close(CloseCode.PROTOCOL_VIOLATION, "POST body is not UTF-8")
            return engineio_error(_BAD_REQUEST, "Bad request: the payload is not UTF-8 text")
        try:
            packets: list[bytes | str] = [
                base64.b64decode(record[1:], validate=True) if record.startswith("b") else record
                for record in text.split("\x1e")
            ]
        except ValueError:  # binascii.Error
            await self.close(CloseCode.PROTOCOL_VIOLATION, "bad base64 in a binary record")
            return engineio_error(_BAD_REQUEST, "Bad request: a binary record (b...) is not base64")
        try:
            async with asyncio.timeout(self._post_wait_s):
                for packet in packets:
                    if self._close_code is not None:
                        break
                    await self._inbox.put(packet)
        except TimeoutError:  # the session stopped reading (it is closing, or stuck): say so
            await self.close(CloseCode.TRY_AGAIN_LATER, "session does not read its packets")
            return engineio_error(_BAD_REQUEST, "Bad request: the session does not read its packets")
        return HttpResponse(200, b"ok", _TEXT)

    def _take(self) -> bytes:
        packets, self._outbox, self._outbox_bytes = self._outbox, [], 0
        return SEPARATOR.join(packets)

    def _wake(self) -> None:
        waiter = self._poll
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- upgrade ----------------------------------------------------------------------------

    def pause(self) -> None:
        """The probe succeeded: answer the pending GET now so that the client can switch."""
        self.upgrading = True
        self._wake()

    async def switch(self, ws: Link) -> None:
        """The client sent ``5``: queued packets go out on ``ws`` first, then everything does.

        Writes move at once; reads once the session has read what the POSTs brought (the client
        finished its POSTs before sending ``5``), at the ``_SWITCHED`` mark behind them in the
        inbox, where :attr:`on_switch` hands ``ws`` over. Until then the WebSocket's frames wait in
        its own buffer (read by no one, so TCP pushes back on a client that floods)."""
        for packet in self._outbox:  # sends while this awaits append here: they go out too, in order
            if packet.startswith(BINARY):
                await ws.send(base64.b64decode(packet[1:]), text=False)
            else:
                await ws.send(packet, text=True)
        self._outbox.clear()
        self._outbox_bytes = 0
        self._ws = ws
        stop_keepalive = getattr(ws, "stop_keepalive", None)
        if stop_keepalive is not None:  # Engine.IO's heartbeat is enough
            stop_keepalive()
        if self._close_code is None:
            await self._inbox.put(_SWITCHED)  # the POSTs are done: waits only while the session reads

    def _finish(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(None)
        if self._inbox.full():  # make room for the close: the session reads no more packets
            with contextlib.suppress(asyncio.QueueEmpty):
                self._inbox.get_nowait()
            self._inbox.put_nowait(None)
        if not self.done.done():
            self.done.set_result(None)
        self._on_close(self)


class PollingSessions:
    """Every long-polling session of a server, by ``sid``; answers the polling HTTP requests."""

    def __init__(
        self,
        settings: Settings,
        admit: Callable[[HandshakeRequest], HttpResponse | Admission],
        serve: Callable[[Link, Admission], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self._admit = admit
        self._serve = serve
        self._sessions: dict[str, PollingLink] = {}
        self.hold_s = settings.socketio_ping_interval_s + settings.socketio_ping_timeout_s
        """How long a GET is held at most (the heartbeat's ping answers it sooner)."""

    def __len__(self) -> int:
        return len(self._sessions)

    def known(self, sid: str) -> bool:
        return sid in self._sessions

    async def handle(self, method: str, request: HandshakeRequest, sid: str | None, body: bytes) -> HttpResponse:
        """Answer one polling request (the query string is already checked)."""
        if sid is None:
            if method != "GET":
                return engineio_error(_BAD_METHOD, "Bad handshake method: a session starts with a GET")
            return await self._open(request)
        link = self._sessions.get(sid)
        if link is None:
            return engineio_error(_UNKNOWN_SID, "Session ID unknown")
        if method == "GET":
            return await link.poll(self.hold_s)
        if method == "POST":
            return await link.post(body)
        return engineio_error(_BAD_METHOD, f"Bad request method {method[:16]!r}: GET or POST")

    async def _open(self, request: HandshakeRequest) -> HttpResponse:
        admission = self._admit(request)
        if isinstance(admission, HttpResponse):
            return admission
        sid = secrets.token_urlsafe(15)
        link = PollingLink(sid, self.settings.max_buffered_bytes, self._forget, self.hold_s)
        self._sessions[sid] = link

        async def serve() -> None:
            try:
                await self._serve(link, admission)
            except Exception:
                logger.exception("Socket.IO polling session %s failed", sid)
            finally:
                admission.release()
                await link.close(CloseCode.NORMAL, "session over")

        _spawn(serve())
        return await link.poll(self.hold_s)  # the OPEN packet, queued by the gate

    def _forget(self, link: PollingLink) -> None:
        if self._sessions.get(link.sid) is link:
            del self._sessions[link.sid]

    async def upgrade(self, sid: str, ws: Link) -> None:
        """Take over session ``sid`` with WebSocket ``ws`` (probe, pause, ``5``) and keep ``ws``
        until the session ends; closes ``ws`` itself when the probe exchange fails."""
        link = self._sessions.get(sid)
        try:
            if link is None or link.upgrading:
                raise LinkClosed(CloseCode.POLICY_VIOLATION, "no polling session to upgrade")
            async with asyncio.timeout(self.settings.handshake_timeout_s):
                if await ws.recv() != "2probe":
                    raise LinkClosed(CloseCode.PROTOCOL_VIOLATION, "expected the 2probe packet")
                await ws.send(b"3probe", text=True)
                link.pause()
                if await ws.recv() != "5":
                    raise LinkClosed(CloseCode.PROTOCOL_VIOLATION, "expected the upgrade packet 5")
            await link.switch(ws)
        except (LinkClosed, TimeoutError) as exc:
            code = exc.code if isinstance(exc, LinkClosed) and exc.code else CloseCode.POLICY_VIOLATION
            if link is not None and link.upgrading and link.close_code is None:
                await link.close(code, "upgrade failed")  # the client stopped polling: nothing else works
            with contextlib.suppress(LinkClosed):
                await ws.close(code, str(exc)[:120] or "upgrade failed")
            return
        await link.done

    async def close_all(self, code: int, reason: str) -> None:
        """Graceful shutdown: every session is told (``1`` on its next GET)."""
        for link in list(self._sessions.values()):
            await link.close(code, reason)


@dataclass(slots=True)
class UpgradeAdmission(Admission):
    """A WebSocket that takes over a long-polling session: it runs no session of its own (the
    polling session's slot and identity stay), the server just lends it to :meth:`PollingSessions.upgrade`."""

    sessions: PollingSessions | None = None
    sid: str = ""

    async def open_link(self, link: Link) -> Link | None:
        assert self.sessions is not None
        await self.sessions.upgrade(self.sid, link)
        return None


def _spawn(work: Any) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
