"""An in-memory transport: the server's real handshake and dispatch, with no socket in between.

The twin of the socket adapters, as ``broker/memory.py`` is of the networked brokers: a
:class:`MemoryLink` is a :class:`~.Link` whose frames travel through two queues, and
:class:`MemoryTransport` is the :class:`~.Transport` that hands such links to
:meth:`App.serve` after :meth:`App.handshake` admitted them. Behaviour tests of the server (what
it answers, delivers, replays and refuses) run through it without ports, TCP or a WebSocket
library; the socket adapters keep their own tests (framing, heartbeats, limits on the wire).

Select it with ``Settings(transport="memory")`` (in code: ``WS_TRANSPORT`` offers only the
socket adapters); ``Server.start`` then "listens" at once, and :meth:`MemoryTransport.connect` on
the transport the server created opens a connection (``tests/support.py``'s ``Peer`` does it).

What it keeps from the contract in ``transport/__init__.py``: messages larger than
``settings.max_payload_bytes`` close the link with 1009; :meth:`Transport.stop` closes every link
with 1001 within the grace; ``admission.release()`` runs when a link's ``serve`` returns. What it
has no use for: heartbeats, fragments, write buffers and the unfinished-handshake caps (no TCP).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import Admission, App, HandshakeRequest, HttpResponse, LinkClosed

if TYPE_CHECKING:
    from ..settings import Settings

_CLOSED = object()
"""Queued after the last frame of a closed direction."""


class _Pipe:
    """One direction of a link: frames in order, then at most one close."""

    __slots__ = ("_queue", "closed")

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | str | object] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    def put(self, data: bytes | str) -> None:
        self._queue.put_nowait(data)

    def close(self, code: int, reason: str) -> bool:
        """Mark the direction closed; False when it already was."""
        if self.closed is not None:
            return False
        self.closed = (code, reason)
        self._queue.put_nowait(_CLOSED)
        return True

    async def get(self) -> bytes | str:
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # every later reader sees the close too
            code, reason = self.closed or (1006, "")
            raise LinkClosed(code, reason)
        assert isinstance(item, (bytes, str))
        return item


class MemoryLink:
    """The server's end of an in-memory connection (a :class:`~.Link`)."""

    __slots__ = ("_close_code", "_closed", "_inbound", "_outbound")

    def __init__(self, inbound: _Pipe, outbound: _Pipe) -> None:
        self._inbound, self._outbound = inbound, outbound
        self._close_code: int | None = None
        self._closed = asyncio.Event()

    async def recv(self) -> bytes | str:
        return await self._inbound.get()

    async def send(self, data: bytes, *, text: bool) -> None:
        if self._close_code is not None:
            raise LinkClosed(self._close_code)
        self._outbound.put(data.decode() if text else data)
        await asyncio.sleep(0)  # a send is a suspension point, as on a socket

    async def close(self, code: int, reason: str) -> None:
        self._closing(code, reason)

    def _closing(self, code: int, reason: str) -> None:
        """Close both directions with ``code`` (whichever side started it)."""
        if self._close_code is None:
            self._close_code = code
        self._outbound.close(code, reason)
        self._inbound.close(code, reason)
        self._closed.set()

    @property
    def close_code(self) -> int | None:
        return self._close_code


class MemoryClient:
    """The client's end: the subset of a ``websockets`` client connection the tests use."""

    __slots__ = ("_closed_here", "_link", "_max_payload", "subprotocol")

    def __init__(self, link: MemoryLink, admission: Admission, max_payload: int) -> None:
        self._link = link
        self._max_payload = max_payload
        self._closed_here = False
        self.subprotocol = admission.subprotocol

    async def send(self, data: bytes | str, text: bool | None = None) -> None:
        """Send one message; a text message is a ``str`` (or ``bytes`` with ``text=True``).

        After this end closed it raises :class:`~.LinkClosed`. After the server closed, the
        message is dropped: over a socket it would be in flight before the close frame is read.
        """
        if self._closed_here:
            raise LinkClosed(self._link.close_code)
        if self._link.close_code is not None:
            return
        message: bytes | str = data.decode() if text and isinstance(data, bytes) else data
        size = len(message.encode()) if isinstance(message, str) else len(message)
        if size > self._max_payload:
            self._link._closing(1009, "message too big")
            return
        self._link._inbound.put(message)
        await asyncio.sleep(0)

    async def recv(self) -> bytes | str:
        """The next message from the server; raises :class:`~.LinkClosed` once it closed."""
        return await self._link._outbound.get()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._closed_here = True
        self._link._closing(code, reason)

    async def wait_closed(self) -> None:
        await self._link._closed.wait()

    @property
    def close_code(self) -> int | None:
        return self._link.close_code


class MemoryTransport:
    """:class:`~.Transport` without sockets: :meth:`connect` is the only way in."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._serving: dict[MemoryLink, asyncio.Task[None]] = {}
        self._stopping = False

    async def start(self) -> tuple[str, int]:
        return "memory", 0

    async def connect(
        self,
        path: str | None = None,
        *,
        query: str = "",
        headers: Sequence[tuple[str, str]] = (),
        remote_ip: str = "127.0.0.1",
    ) -> MemoryClient | HttpResponse:
        """Run the handshake; an admitted connection is served by a task until it closes.

        Returns the client's end, or the :class:`~.HttpResponse` the server answered instead.
        """
        if self._stopping:
            return HttpResponse(503, b"server is shutting down\n")
        if not self.app.handshake_started(remote_ip):
            return HttpResponse(503, b"too many unfinished handshakes\n")
        try:
            request = HandshakeRequest(path or self.settings.path, query, tuple(headers), remote_ip)
            result = self.app.handshake(request)
        finally:
            self.app.handshake_ended(remote_ip)
        if isinstance(result, HttpResponse):
            return result
        link = MemoryLink(_Pipe(), _Pipe())
        self._serving[link] = asyncio.get_running_loop().create_task(self._serve(link, result))
        return MemoryClient(link, result, self.settings.max_payload_bytes)

    async def _serve(self, link: MemoryLink, admission: Admission) -> None:
        try:
            await self.app.serve(link, admission)
        finally:
            admission.release()
            link._closing(link.close_code or 1000, "")
            self._serving.pop(link, None)

    async def stop(self, grace_s: float) -> None:
        """Close every link with 1001 and wait (bounded by ``grace_s``) for the server to let go."""
        self._stopping = True
        for link in list(self._serving):
            link._closing(1001, "server shutting down")
        tasks = list(self._serving.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
