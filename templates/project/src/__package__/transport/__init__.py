"""The seam between the server and the socket library.

``server.py`` never touches sockets. A transport adapter (``websockets.py`` today, ``picows.py``
as an added file, ``asgi.py`` behind the host's ASGI server when mounted; ``memory.py`` is their
socketless twin for tests) accepts TCP connections, speaks HTTP/WebSocket, and talks to the server through
the small :class:`App` interface:

1. For every HTTP request it builds a :class:`HandshakeRequest` and calls :meth:`App.handshake`.
   The answer is either an :class:`HttpResponse` (health, metrics, static files, or a refusal such
   as 401/403/400/429/503) to send instead of upgrading, or an :class:`Admission` to upgrade with
   ``Admission.subprotocol`` echoed in ``Sec-WebSocket-Protocol`` (``None``: no header).
2. Once the WebSocket is open it calls ``await App.serve(link, admission)`` and keeps the
   connection until that returns. The :class:`Link` is the per-connection socket API.
3. It calls ``admission.release()`` when the TCP connection is gone, whether or not ``serve`` ran
   (``release`` is idempotent), so connection caps never leak.

The adapter enforces ``settings.max_payload_bytes`` and ``settings.max_fragments`` per message
(close 1009), runs the ping/pong heartbeat with ``settings.ping_interval_s`` / ``ping_timeout_s``
(close 1011 on timeout), and on :meth:`Transport.stop` closes every connection with 1001 within
the grace period, listening (so ``/readyz`` answers 503) until they are gone. It also defends
what the server never sees:

* every TCP connection is announced with :meth:`App.handshake_started` before its request is
  read (False: cut it at once) and :meth:`App.handshake_ended` once its handshake is over, and an
  unfinished handshake is closed after ``settings.handshake_timeout_s``;
* pings from the client spend a per-connection token bucket (``rate_per_s`` / ``rate_burst``,
  like messages); ``rate_violations_before_close`` pings over it close with 4008;
* a connection whose socket write buffer passes ``settings.max_buffered_bytes`` (pongs included)
  is cut at once, counted as 4009: a client that does not read cannot take a close frame.

Each close the adapter decides itself is reported with :meth:`App.connection_cut` (metrics).
:func:`create_transport` picks the adapter named by ``settings.transport``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..auth import Identity
from ..protocol import Codec

if TYPE_CHECKING:
    from ..settings import Settings


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """An HTTP request as the server sees it; header names compare case-insensitively."""

    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    remote_ip: str
    identity: Identity | None = None
    """Who the host application says this is (``asgi.py``'s ``authenticate`` hook: its session or
    dependency), or None. Set, it stands in for the token: Origin, caps and subprotocol are still
    checked. Only an adapter inside the host app sets it; a socket adapter never does."""

    def header(self, name: str) -> str | None:
        """The first value of header ``name``."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def header_values(self, name: str) -> list[str]:
        """Every comma-separated value of every ``name`` header (for Sec-WebSocket-Protocol)."""
        lowered = name.lower()
        values: list[str] = []
        for key, value in self.headers:
            if key.lower() == lowered:
                values.extend(v.strip() for v in value.split(",") if v.strip())
        return values


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A plain HTTP response sent instead of the upgrade; the connection then closes."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def _noop() -> None:
    return None


@dataclass(slots=True)
class Admission:
    """A handshake the server accepts: what to echo, who connected, and how to give the slot back."""

    codec: Codec
    subprotocol: str | None
    identity: Identity
    remote_ip: str
    release_slot: Callable[[], None] = field(default=_noop, repr=False)
    released: bool = False
    headers: Sequence[tuple[str, str]] = field(default=(), repr=False)
    """The handshake's headers, kept only when the application's connect hook will see them."""

    def release(self) -> None:
        """Give back the connection slot; idempotent, callable from the adapter and the server."""
        if not self.released:
            self.released = True
            self.release_slot()


class LinkClosed(Exception):
    """The WebSocket is closed; ``code`` is the close code when one was received or sent."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".strip())
        self.code = code
        self.reason = reason


class Link(Protocol):
    """One open WebSocket, as the server uses it."""

    async def recv(self) -> bytes | str:
        """The next message: ``str`` for a text frame, ``bytes`` for binary. Raises :class:`LinkClosed`."""
        ...

    async def send(self, data: bytes, *, text: bool) -> None:
        """Send ``data`` as one text (UTF-8 already) or binary frame; waits while the socket is
        congested (this is what makes the outbound queue fill up). Raises :class:`LinkClosed`."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Start (and wait for, bounded) the closing handshake; idempotent."""
        ...

    @property
    def close_code(self) -> int | None:
        """The close code sent or received, once closed."""
        ...


class InlineLink(Link, Protocol):
    """A :class:`Link` that can hand frames to the server inside its data callback (picows).

    When ``inline`` is set, the adapter calls it with each complete message, in order, before
    queueing anything for :meth:`Link.recv`; ``True`` means the server handled it. ``False`` (a
    request of the connection is still in progress, or its outbox is full) and every message
    after it, while any are queued, go to :meth:`Link.recv` as usual, so order is kept.
    """

    inline: Callable[[bytes | str], bool] | None


class FrameLink(Link, Protocol):
    """A :class:`Link` that can also write synchronously (picows): the server's per-iteration
    flush writes each connection's queued messages with one call instead of waking a task."""

    def ready(self) -> bool:
        """True when a write now would neither block on congestion nor hit a closing link."""
        ...

    def write_frame(self, data: bytes, text: bool) -> bool:
        """Write one message as a whole frame now, unless the link is congested or closing
        (:meth:`ready` would be False): then write nothing and return False. For fan-out's eager
        path, once per recipient, so the readiness check is part of the call."""
        ...

    def write_frames(self, batch: list[bytes], text: bool) -> None:
        """Write every message of ``batch`` in order, as whole frames, in one call; only after
        :meth:`ready` returned True in the same callback."""
        ...


class App(Protocol):
    """What the server offers to a transport adapter."""

    def handshake(self, request: HandshakeRequest) -> HttpResponse | Admission: ...

    async def serve(self, link: Link, admission: Admission) -> None: ...

    def handshake_started(self, remote_ip: str) -> bool:
        """A TCP connection from ``remote_ip`` arrived; False: too many unfinished handshakes, cut it."""
        ...

    def handshake_ended(self, remote_ip: str) -> None:
        """Once per :meth:`handshake_started` that returned True: the request was answered or the
        connection is gone."""
        ...

    def connection_cut(self, code: int, reason: str) -> None:
        """The adapter closed a connection for abuse (4008 ping flood, 4009 write buffer, 1009)."""
        ...


class Transport(Protocol):
    """A listening socket bound to an :class:`App`."""

    async def start(self) -> tuple[str, int]:
        """Listen on ``settings.host:settings.port``; returns the bound address (port 0 resolved)."""
        ...

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, close every connection with 1001, return within about ``grace_s``."""
        ...


def gated_protocol(base: Any) -> Any:
    """``base`` (picows' ``WSProtocol``) with the unfinished-handshake caps of
    :meth:`App.handshake_started`: a connection over them is cut before a byte is read.

    Only ``connection_made`` / ``connection_lost`` are overridden: bytes still go straight to
    picows' own (C) buffer callbacks. The class is built here rather than in ``picows.py``
    because that module is compiled by mypyc, and a compiled subclass of a Cython class loses
    its base (its MRO becomes ``object``).
    """

    class GatedProtocol(base):  # type: ignore[misc]
        app: App
        gated_ip: str | None = None

        def connection_made(self, transport: Any) -> None:
            base.connection_made(self, transport)
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else ""
            if self.app.handshake_started(ip):
                self.gated_ip = ip
            else:
                transport.abort()

        def handshake_over(self) -> None:
            ip, self.gated_ip = self.gated_ip, None
            if ip is not None:
                self.app.handshake_ended(ip)

        def connection_lost(self, exc: Exception | None) -> None:
            self.handshake_over()
            base.connection_lost(self, exc)

    return GatedProtocol


_ADAPTERS = {
    "websockets": ("websockets", "WebSocketsTransport"),
    "picows": ("picows", "PicowsTransport"),
    # Mounted in the team's ASGI app (asgi.py): the host's ASGI server owns the socket.
    "asgi": ("asgi", "AsgiTransport"),
    # No socket: the server's behaviour tests run through it (transport/memory.py).
    "memory": ("memory", "MemoryTransport"),
}


def create_transport(app: App, settings: Settings) -> Transport:
    """The adapter named by ``settings.transport``, imported only when chosen.

    Raises:
        SettingsError: unknown transport name, or one this project was rendered without (or whose
            library is not installed); ``python -m`` turns it into exit status 2.
    """
    from ..settings import SettingsError

    adapter = _ADAPTERS.get(settings.transport)
    if adapter is None:
        raise SettingsError(f"unknown transport {settings.transport!r}; expected one of {sorted(_ADAPTERS)}")
    try:
        module = importlib.import_module(f".{adapter[0]}", __package__)
    except ModuleNotFoundError as exc:
        raise SettingsError(
            f"WS_TRANSPORT={settings.transport!r} is not usable here: {exc.msg} "
            f"(this project ships {', '.join(_shipped())}; install or render the other adapter)"
        ) from exc
    return cast(Transport, getattr(module, adapter[1])(app, settings))


def _shipped() -> list[str]:
    return [name for name, (module, _) in _ADAPTERS.items() if importlib.util.find_spec(f".{module}", __package__)]
