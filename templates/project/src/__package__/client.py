"""Reconnecting asyncio client for this project's WebSocket server (wire protocol v1).

Usage::

    async with Client("ws://127.0.0.1:8000/ws", token=jwt) as client:
        await client.subscribe("room:lobby")
        await client.publish("room:lobby", {"text": "hi"})
        async for event in client.events():
            print(event.channel, event.seq, event.payload)

The client keeps one connection open for as long as it lives. When the connection drops it
reconnects with exponential backoff and full jitter, resubscribes every channel from the last
``seq`` it saw (the server replays what was missed, or sends ``resync``), and sends the publishes
that were queued while it was offline. What a close code means is decided by one pure function,
:func:`classify_close`; the delays come from one plain generator, :func:`backoff`. Both are
constructor arguments so that tests shrink them instead of patching ``asyncio.sleep`` (the
websockets library's ``asyncio/client.py`` does the same with ``process_exception``).

The pure parts (:func:`backoff`, :func:`classify_close`, :func:`classify_status`,
:class:`Reconnector`, all four in ``reconnect.py`` and re-exported here, :class:`OfflineQueue`,
:class:`SeqTracker`) do no I/O and are tested without an event loop. :class:`Dialer` opens the
connections and applies the reconnect policy between them; :class:`Client` is the asyncio glue
that runs each connection (resubscribe, send, receive) around them.

Exceptions::

    ClientError
      RequestError        the server answered a request with an ``error`` envelope
      ConnectionLost      the connection dropped before the answer came; safe to retry
      MessageDropped      the offline queue overflowed and dropped this publish
      ClientStopped       the client stopped and will not reconnect
        ServerClosed        ... because the server closed with a "don't come back" code
        HandshakeRejected   ... because the server refused the upgrade (HTTP 401, 403, 400)
        ClientClosed        ... because the application called :meth:`Client.aclose`
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from . import protocol
from .reconnect import (
    RETRYABLE_ERRORS,
    Decision,
    Reconnector,
    backoff,
    classify_close,
    classify_error,
    classify_status,
)
from .settings import Settings

__all__ = [
    "RETRYABLE_ERRORS",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientStopped",
    "ConnectionLost",
    "Decision",
    "Event",
    "HandshakeRejected",
    "MessageDropped",
    "OfflineQueue",
    "QueuedPublish",
    "Reconnector",
    "RequestError",
    "SeqTracker",
    "ServerClosed",
    "backoff",
    "classify_close",
    "classify_error",
    "classify_status",
]

logger = logging.getLogger(__name__)

# --- exceptions ---------------------------------------------------------------------------------


class ClientError(Exception):
    """Root of the client's errors."""


class RequestError(ClientError):
    """The server answered with an ``error`` envelope (contract §3 error codes)."""

    def __init__(self, code: str, message: str = "", retry_after_ms: int | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}" if self.message else self.code
        if self.retry_after_ms is not None:
            text += f" (retry after {self.retry_after_ms} ms)"
        return text


class ConnectionLost(ClientError):
    """The connection dropped while a request was in flight; the request may be retried."""

    def __str__(self) -> str:
        return "connection lost before the server answered"


class MessageDropped(ClientError):
    """The offline queue was full; this publish (the oldest queued one) was dropped unsent."""

    def __init__(self, channel: str, capacity: int) -> None:
        super().__init__(channel, capacity)
        self.channel = channel
        self.capacity = capacity

    def __str__(self) -> str:
        return f"offline queue full ({self.capacity}): dropped publish to {self.channel}"


class ClientStopped(ClientError):
    """The client has stopped and will not reconnect; every later call raises this too."""

    def __str__(self) -> str:
        return "client stopped"


class ServerClosed(ClientStopped):
    """The server closed the connection with a code that means "don't come back"."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"closed by server: {self.code} {self.reason}".rstrip()


class HandshakeRejected(ClientStopped):
    """The server refused the WebSocket upgrade with an HTTP status."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"handshake rejected: HTTP {self.status} {self.reason}".rstrip()


class ClientClosed(ClientStopped):
    """The application closed the client."""

    def __str__(self) -> str:
        return "client closed"


@dataclass(slots=True)
class QueuedPublish:
    """A publish waiting to be sent (offline) or acknowledged (in flight)."""

    channel: str
    payload: Any
    msg_id: str
    future: asyncio.Future[int] | None = None


class OfflineQueue:
    """Bounded FIFO of publishes made while disconnected; the oldest is dropped when full.

    Dropping the oldest keeps the newest state (a typing indicator, a position) and bounds memory
    when the server stays away for long. Each drop is counted in :attr:`dropped`.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._items: deque[QueuedPublish] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: QueuedPublish) -> QueuedPublish | None:
        """Append ``item``; return the item that was dropped to make room, if any."""
        if self.capacity <= 0:
            self.dropped += 1
            return item
        victim = self._items.popleft() if len(self._items) >= self.capacity else None
        self._items.append(item)
        if victim is not None:
            self.dropped += 1
        return victim

    def requeue(self, items: Sequence[QueuedPublish]) -> list[QueuedPublish]:
        """Put in-flight items back at the front, in order; return those that no longer fit."""
        for item in reversed(items):
            self._items.appendleft(item)
        victims: list[QueuedPublish] = []
        while len(self._items) > max(self.capacity, 0):
            victims.append(self._items.popleft())
            self.dropped += 1
        return victims

    def popleft(self) -> QueuedPublish | None:
        """Remove and return the oldest item, or None when empty."""
        return self._items.popleft() if self._items else None

    def drain(self) -> list[QueuedPublish]:
        """Remove and return every queued item, oldest first."""
        items = list(self._items)
        self._items.clear()
        return items


@dataclass(slots=True)
class _Position:
    last_seq: int = 0
    epoch: str | None = None


class SeqTracker:
    """The last ``seq`` seen per channel: resume points and duplicate detection; no I/O.

    Sequence numbers are per channel, start at 1 and have no gaps (contract §3), so an event with
    ``seq <= last_seq`` was already delivered (a replay overlapping live delivery) and a jump shows
    how many events were missed.
    """

    def __init__(self) -> None:
        self._positions: dict[str, _Position] = {}

    def resume_point(self, channel: str) -> dict[str, Any]:
        """The ``subscribe`` payload: empty the first time, then ``since_seq`` and ``epoch``."""
        pos = self._positions.get(channel)
        if pos is None or pos.epoch is None:
            return {}
        return {"since_seq": pos.last_seq, "epoch": pos.epoch}

    def last_seq(self, channel: str) -> int:
        pos = self._positions.get(channel)
        return 0 if pos is None else pos.last_seq

    def subscribed(self, channel: str, reply: Mapping[str, Any], *, resumed: bool) -> None:
        """Record a ``subscribe`` response.

        After a successful resume the missed events follow the response, so the position must not
        jump ahead of them. Otherwise (first subscribe, or history lost) the channel starts at the
        server's current ``seq``.
        """
        pos = self._positions.setdefault(channel, _Position())
        epoch = reply.get("epoch")
        seq = reply.get("seq")
        if not (resumed and reply.get("recovered")) and isinstance(seq, int):
            # Within one epoch seq only grows; a new epoch is a new numbering.
            pos.last_seq = max(pos.last_seq, seq) if pos.epoch == epoch else seq
        if isinstance(epoch, str):
            pos.epoch = epoch

    def resync(self, channel: str, seq: int, epoch: str | None) -> None:
        """The server could not replay: start again from its current position."""
        self._positions[channel] = _Position(last_seq=seq, epoch=epoch)

    def accept(self, channel: str, seq: int) -> int | None:
        """Record event ``seq``; None for a duplicate, else how many events were skipped (>= 0)."""
        pos = self._positions.setdefault(channel, _Position())
        if seq <= pos.last_seq:
            return None
        missed = seq - pos.last_seq - 1 if pos.last_seq else 0
        pos.last_seq = seq
        return missed

    def forget(self, channel: str) -> None:
        self._positions.pop(channel, None)


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One server-pushed event.

    ``action`` is ``message``, ``presence.join``, ``presence.leave``, ``resync``,
    ``subscription.refused``, ``subscription.added`` or ``subscription.removed``. On ``resync`` the application must refetch the channel's state:
    events were lost for good (history retention exceeded, a gap the broker could not refill, or
    the server's history restarted with a new epoch). ``subscription.refused`` (payload
    ``{"code", "message"}``) says the server definitively refused to resubscribe ``channel`` after
    a reconnect (e.g. ``forbidden`` once the user's grants changed): the client no longer follows
    it. ``subscription.added`` / ``subscription.removed`` say the application's backend subscribed
    or unsubscribed this user (server API): the client then follows the channel (and resumes it
    after a reconnect) or stops, as if it had called :meth:`Client.subscribe` / :meth:`Client.unsubscribe`.
    Only ``message`` events carry a ``seq``; the others are not part of the channel's sequence.
    """

    action: str
    channel: str | None
    payload: Any
    seq: int | None = None
    ts: int | None = None
    sender: str | None = None
    missed: int = 0
    """How many events were skipped just before this one (a visible gap); normally 0."""


@dataclass(slots=True)
class ClientStats:
    """Counters an application can export to its own metrics."""

    connects: int = 0
    """Connections opened so far."""
    offline_dropped: int = 0
    duplicates: int = 0
    events_dropped: int = 0
    gaps: int = 0
    last_decision: Decision | None = None
    """What the last connection end or failed attempt led to."""
    last_delay: float = 0.0
    """Seconds the client waited (or is waiting) before its latest attempt."""


_SERVER_SIDE = frozenset({protocol.SUBSCRIPTION_ADDED, protocol.SUBSCRIPTION_REMOVED})
_END: Any = object()
_DEFAULT: Any = object()


@dataclass(slots=True)
class _Subscription:
    waiters: list[asyncio.Future[Any]] = field(default_factory=list)
    delays: Iterator[float] | None = None
    """Retry delays after retryable refusals; reset by a successful subscribe."""
    retry: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any] | None
    """Awaited by the caller of :meth:`Client.request`; None when nobody waits for it."""
    action: str
    channel: str | None = None
    resumed: bool = False
    outgoing: QueuedPublish | None = None


class Dialer:
    """Opens the client's connections, one after another, and applies the reconnect policy
    between them: classify each refusal or close, refresh the token when asked to, wait the
    :class:`~.reconnect.Reconnector`'s delay. What runs on an open connection is the
    :class:`Client`'s business; this class only dials, so the policy reads in one place."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        token_provider: Callable[[], Awaitable[str]] | None,
        subprotocols: list[Subprotocol],
        new_delays: Callable[[], Iterator[float]],
        classify_close: Callable[[int], Decision],
        classify_status: Callable[[int], Decision],
        reset_after_s: float,
        retry_later_s: float,
        connect_kwargs: dict[str, Any],
    ) -> None:
        self.url = url
        self.token = token
        """Sent as ``Authorization: Bearer`` on the next connect (:meth:`Client.refresh_token` sets it)."""
        self.token_provider = token_provider
        self.new_delays = new_delays
        """Factory of reconnect delays; the client's subscribe retries use it too."""
        self.retry_later_s = retry_later_s
        self._subprotocols = subprotocols
        self._classify_close = classify_close
        self._classify_status = classify_status
        self._reset_after_s = reset_after_s
        self._connect_kwargs = connect_kwargs

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def connections(self, stats: ClientStats, stopped: Callable[[], bool]) -> AsyncIterator[ClientConnection]:
        """Open connections until ``stopped()``, sleeping per policy between them; yields each live one.

        Raises :class:`ClientStopped` when the policy says to give up.
        """
        reconnector = Reconnector(self.new_delays, reset_after_s=self._reset_after_s, retry_later_s=self.retry_later_s)
        refreshed = False
        while not stopped():
            retry_after: float | None = None
            try:
                conn = await connect(
                    self.url,
                    subprotocols=self._subprotocols,
                    additional_headers=self.headers(),
                    **self._connect_kwargs,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                body = exc.response.body.decode("utf-8", "replace").strip()[:200]
                error: ClientStopped = HandshakeRejected(status, body)
                decision = self._classify_status(status)
                retry_after = _retry_after(exc.response.headers.get("Retry-After"))
                if decision == "reauth" and refreshed:
                    decision = "stop"  # a brand-new token was refused too
            except InvalidURI as exc:
                raise ClientStopped() from exc
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                logger.info("connect to %s failed: %s", self.url, exc)
                error, decision = ClientStopped(), "retry"
            else:
                reconnector.opened(time.monotonic())
                stats.connects += 1
                refreshed = False
                yield conn
                code, reason = conn.close_code or 1006, conn.close_reason or ""
                error, decision = ServerClosed(code, reason), self._classify_close(code)
                logger.info("connection closed: %s -> %s", error, decision)
            if stopped():
                return
            if decision == "reauth":
                if self.token_provider is None:
                    decision = "stop"
                else:
                    try:
                        self.token = await self.token_provider()
                        refreshed = True
                    except Exception:  # an auth service outage is transient: back off, ask again
                        logger.exception("token_provider failed; retrying with backoff")
                        decision = "retry"
            stats.last_decision = decision
            if decision == "stop":
                raise error
            stats.last_delay = reconnector.delay(decision, time.monotonic(), retry_after)
            await asyncio.sleep(stats.last_delay)


# --- the client -----------------------------------------------------------------------------------


class Client:
    """A WebSocket client that stays connected; see the module docstring.

    Args:
        url: ``ws://host:port/ws`` (``settings.path``).
        token: JWT sent as ``Authorization: Bearer``.
        token_provider: async callable returning a fresh token; called after close 4001 (token
            expired) and after HTTP 401, then the client reconnects. Without it those stop.
        codec: ``"json"``, ``"msgpack"`` or ``"protobuf"`` to offer only that codec (one of the
            project's ``settings.codecs``); default: every codec the server supports, in its
            preference order.
        settings: defaults for the reconnect policy, offline queue and subprotocols.
        reconnect_delays: zero-argument factory of reconnect delays (default :func:`backoff`
            with the settings' base, cap and jitter), as in ``websockets.asyncio.client.connect``.
        classify_close: close code -> :data:`Decision` (default :func:`classify_close`).
        classify_status: HTTP status at the handshake -> :data:`Decision`.
        request_timeout: default seconds :meth:`request` waits for the answer.
        publish_timeout: default seconds :meth:`publish` waits for its acknowledgement, queueing
            included (``None``: no limit).
        max_payload_bytes: the server's ``max_payload_bytes`` (default: this project's setting).
            A request over :func:`~.protocol.publish_limit` of it is refused here with
            ``payload_too_large``, never sent: the server would answer the same or close with 1009.
        event_buffer: events kept for :meth:`events`; when full the oldest is dropped and counted
            (``stats.events_dropped``), so an application that never reads events cannot stall the
            answers to its requests.
        connect_kwargs: passed to ``websockets.asyncio.client.connect`` (``ping_interval``,
            ``max_size``, ``open_timeout``, ...).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: Callable[[], Awaitable[str]] | None = None,
        codec: Literal["json", "msgpack", "protobuf"] | None = None,
        settings: Settings | None = None,
        reconnect_delays: Callable[[], Iterator[float]] | None = None,
        classify_close: Callable[[int], Decision] = classify_close,
        classify_status: Callable[[int], Decision] = classify_status,
        retry_later_s: float | None = None,
        request_timeout: float = 10.0,
        publish_timeout: float | None = 30.0,
        max_payload_bytes: int | None = None,
        event_buffer: int = 10_000,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        settings = settings if settings is not None else Settings()
        self.url = url
        subprotocols = [Subprotocol(c.subprotocol) for c in settings.codecs if codec is None or c.value == codec]
        jitter: Literal["full", "equal", "none"] = "full"
        if settings.reconnect_jitter in ("equal", "none"):
            jitter = "equal" if settings.reconnect_jitter == "equal" else "none"
        self._dialer = Dialer(
            url,
            token=token,
            token_provider=token_provider,
            subprotocols=subprotocols,
            new_delays=reconnect_delays
            or functools.partial(backoff, settings.reconnect_base_s, settings.reconnect_cap_s, jitter),
            classify_close=classify_close,
            classify_status=classify_status,
            reset_after_s=settings.reconnect_reset_after_s,
            retry_later_s=settings.reconnect_cap_s if retry_later_s is None else retry_later_s,
            connect_kwargs=dict(connect_kwargs or {}),
        )
        """Connects and reconnects (the policy); this class runs what happens on each connection."""
        self.request_timeout = request_timeout
        self.publish_timeout = publish_timeout
        self._max_frame = protocol.publish_limit(max_payload_bytes or settings.max_payload_bytes)
        self._largest: tuple[int, str] = (0, "")
        """Size and id of the largest request written on this connection: what a 1009 refused."""

        self.stats = ClientStats()
        self._offline = OfflineQueue(settings.offline_queue_size)
        self._positions = SeqTracker()
        self._subscriptions: dict[str, _Subscription] = {}
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._event_buffer = event_buffer

        self._conn: ClientConnection | None = None
        self._fields: protocol.Fields = settings.envelope
        self._codec = protocol.Codec.JSON
        self._open = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stop_error: ClientStopped | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start(self) -> None:
        """Begin connecting in the background; idempotent. Calls made before the first connection
        wait for it (requests) or are queued (publishes)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"wsforge-client {self.url}")

    @property
    def connected(self) -> bool:
        return self._open.is_set()

    @property
    def stopped(self) -> ClientStopped | None:
        """Why the client stopped, or None while it is running."""
        return self._stop_error

    async def wait_connected(self) -> None:
        """Wait until a connection is open and resubscribed.

        Raises:
            ClientStopped: the client stopped instead (refused handshake, fatal close code).
        """
        await self._wait_open()

    async def aclose(self) -> None:
        """Close the connection with 1000 and stop reconnecting; idempotent.

        Pending requests and queued publishes fail with :class:`ClientClosed`; :meth:`events`
        ends after the events already received.
        """
        if self._stop_error is None:
            self._stop(ClientClosed())
        conn, task = self._conn, self._task
        if conn is not None:
            await conn.close(1000, "client closing")
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- application API -------------------------------------------------------------------------

    async def request(
        self,
        action: str,
        channel: str | None = None,
        payload: Any = None,
        *,
        timeout: float | None = _DEFAULT,
    ) -> Any:
        """Send one request and return the ``payload`` of its ``response``.

        Waits for a connection first (inside the same timeout).

        Raises:
            RequestError: the server answered with an ``error`` envelope.
            TimeoutError: no answer within ``timeout`` seconds (default ``request_timeout``).
            ConnectionLost: the connection dropped first; nothing says whether the server acted.
            ClientStopped: the client has stopped.
        """
        timeout = self.request_timeout if timeout is _DEFAULT else timeout
        async with asyncio.timeout(timeout):
            conn = await self._wait_open()
            return await self._send_request(conn, _Pending(self._future(), action, channel), payload)

    async def subscribe(self, channel: str, *, timeout: float | None = _DEFAULT) -> Any:
        """Join ``channel``; it is resubscribed on every reconnect until :meth:`unsubscribe`.

        Returns the subscribe response ``{seq, epoch, recovered, replayed, presence?}``.

        A retryable error (``broker_unavailable`` while the broker restarts, ``rate_limited``, see
        :func:`classify_error`) does not end the subscription: it is retried with the reconnect
        policy's delays, and this call returns when it succeeds (or raises ``TimeoutError`` after
        ``timeout``; the subscription then stays wanted until :meth:`unsubscribe`).

        Raises:
            RequestError: refused (``forbidden``, ``invalid_channel``, ...); not kept for later.
        """
        timeout = self.request_timeout if timeout is _DEFAULT else timeout
        self._raise_if_stopped()
        sub = self._subscriptions.get(channel)
        waiter = self._future()
        if sub is None:
            sub = self._subscriptions[channel] = _Subscription()
            sub.waiters.append(waiter)
            if self._conn is not None and self._open.is_set():
                await self._send_subscribe(self._conn, channel)
        else:
            sub.waiters.append(waiter)
            if self._open.is_set():
                # Already subscribed on this connection: subscribing again is idempotent.
                sub.waiters.remove(waiter)
                return await self.request("subscribe", channel, {}, timeout=timeout)
        async with asyncio.timeout(timeout):
            return await waiter

    async def unsubscribe(self, channel: str, *, timeout: float | None = _DEFAULT) -> None:
        """Leave ``channel`` and stop resubscribing it."""
        self._drop_subscription(channel, f"unsubscribed from {channel} before the subscription completed")
        if self._open.is_set():
            await self.request("unsubscribe", channel, timeout=timeout)

    async def publish(
        self,
        channel: str,
        payload: Any,
        *,
        msg_id: str | None = None,
        timeout: float | None = _DEFAULT,
    ) -> int:
        """Publish ``payload`` to ``channel`` and return the ``seq`` the server gave it.

        While disconnected the publish waits in the offline queue and is sent after the next
        reconnect. Every publish carries a ``msg_id`` (generated when not given) so that a resend
        after a lost acknowledgement is not delivered twice (server idempotency window).
        Cancelling the wait before the publish is sent withdraws it.

        Raises:
            MessageDropped: the offline queue overflowed before this publish could be sent.
            RequestError: refused (``forbidden``, ``rate_limited``, ...); ``payload_too_large``
                without sending anything when the frame is over the server's limit, and when
                the server refused it (error, or close 1009: it is dropped, never resent).
            TimeoutError: no acknowledgement within ``timeout`` (default ``publish_timeout``).
        """
        self._raise_if_stopped()
        msg_id = msg_id or uuid.uuid4().hex
        size = len(self._encode("0" * 12, "publish", channel, payload, msg_id=msg_id))
        if size > self._max_frame:
            raise RequestError(
                protocol.ErrorCode.PAYLOAD_TOO_LARGE.value,
                f"publish of about {size} bytes; the server takes at most {self._max_frame}",
            )
        timeout = self.publish_timeout if timeout is _DEFAULT else timeout
        item = QueuedPublish(channel, payload, msg_id, self._future())
        assert item.future is not None
        if self._conn is not None and self._open.is_set():
            await self._send_publish(self._conn, item)
        else:
            victim = self._offline.push(item)
            if victim is not None:
                self._drop(victim)
        async with asyncio.timeout(timeout):
            return await item.future

    async def presence(self, channel: str, *, timeout: float | None = _DEFAULT) -> list[Any]:
        """Who is in ``channel``: ``[{"user": ..., "connections": n}, ...]``."""
        reply = await self.request("presence", channel, {}, timeout=timeout)
        members = reply.get("members", []) if isinstance(reply, dict) else []
        return list(members)

    async def history(
        self,
        channel: str,
        since_seq: int = 0,
        *,
        limit: int | None = None,
        timeout: float | None = _DEFAULT,
    ) -> list[Event]:
        """Kept events of ``channel`` with ``seq > since_seq``, oldest first."""
        body: dict[str, Any] = {"since_seq": since_seq}
        if limit is not None:
            body["limit"] = limit
        reply = await self.request("history", channel, body, timeout=timeout)
        messages = reply.get("messages", []) if isinstance(reply, dict) else []
        return [self._event_from(m) for m in messages if isinstance(m, dict)]

    async def rpc(self, name: str, payload: Any = None, *, timeout: float | None = _DEFAULT) -> Any:
        """Call the server-side handler registered as ``rpc.<name>``."""
        return await self.request(f"rpc.{name}", None, payload, timeout=timeout)

    async def ping(self, *, timeout: float | None = _DEFAULT) -> float:
        """Application-level round trip in seconds (WebSocket pings are separate)."""
        started = time.perf_counter()
        await self.request("ping", timeout=timeout)
        return time.perf_counter() - started

    async def refresh_token(self, token: str, *, timeout: float | None = _DEFAULT) -> Any:
        """Send ``auth.refresh`` before the current token expires; later reconnects use ``token``."""
        reply = await self.request("auth.refresh", None, {"token": token}, timeout=timeout)
        self._dialer.token = token
        return reply

    @property
    def subscriptions(self) -> list[str]:
        """Channels this client follows (and resumes on reconnect): its own subscribes and those
        the application's backend added (``subscription.added``)."""
        return list(self._subscriptions)

    def last_seq(self, channel: str) -> int:
        """The last ``seq`` delivered on ``channel`` (0 before any)."""
        return self._positions.last_seq(channel)

    async def events(self) -> AsyncIterator[Event]:
        """Events in the order they arrived, duplicates removed.

        Ends after :meth:`aclose`. When the client stopped for another reason, raises that
        :class:`ClientStopped` after the buffered events.
        """
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)  # let other iterators end too
                if self._stop_error is not None and not isinstance(self._stop_error, ClientClosed):
                    raise self._stop_error
                return
            yield item

    # -- connection loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            async for conn in self._dialer.connections(self.stats, lambda: self._stop_error is not None):
                await self._serve(conn)
        except ClientStopped as exc:
            self._stop(exc)
        except asyncio.CancelledError:
            self._stop(ClientClosed())
            raise
        except Exception as exc:  # a bug: stop loudly rather than spin
            logger.exception("client loop crashed")
            stop = ClientStopped()
            stop.__cause__ = exc
            self._stop(stop)

    async def _serve(self, conn: ClientConnection) -> None:
        """Run one connection: resubscribe, flush the offline queue, read until it closes."""
        self._conn = conn
        self._codec = _codec_for(conn.subprotocol)
        reader = asyncio.create_task(self._read(conn))
        try:
            # Subscribes go first so that our own queued publishes come back to us as events.
            # Calls made while this runs see the connection as not open yet and queue up, so
            # loop until nothing is left; `_open` is set with no await after the last check.
            sent: set[str] = set()
            while True:
                if todo := [c for c in self._subscriptions if c not in sent]:
                    sent.update(todo)
                    for channel in todo:
                        await self._send_subscribe(conn, channel, resume=True)
                elif (item := self._offline.popleft()) is not None:
                    await self._send_publish(conn, item)
                else:
                    break
            self._open.set()
            await reader
        finally:
            reader.cancel()
            self._open.clear()
            self._conn = None
            if conn.close_code == 1009:
                self._refused_too_big()
            self._largest = (0, "")
            self._connection_ended()

    def _refused_too_big(self) -> None:
        """The server closed with 1009: the largest request written on the connection was too big.
        Fail it rather than resend it after the reconnect (which would only repeat the close)."""
        pending = self._pending.pop(self._largest[1], None)
        self._largest = (0, "")
        if pending is None:
            return
        error = RequestError(protocol.ErrorCode.PAYLOAD_TOO_LARGE.value, "the server closed with 1009 (message too big)")
        logger.warning("%s refused by the server as too big; dropped, not resent", pending.action)
        for future in (pending.future, pending.outgoing.future if pending.outgoing is not None else None):
            if future is not None:
                _fail(future, error)

    async def _read(self, conn: ClientConnection) -> None:
        try:
            async for data in conn:
                try:
                    self._receive(data)
                except Exception:  # one odd frame must not take the connection down
                    logger.exception("failed to handle a frame from the server")
        except ConnectionClosed:
            pass

    def _connection_ended(self) -> None:
        """Fail what cannot survive the connection; keep publishes and subscriptions for the next."""
        inflight: list[QueuedPublish] = []
        for pending in self._pending.values():
            if pending.outgoing is not None:
                inflight.append(pending.outgoing)
            elif pending.future is not None:
                _fail(pending.future, ConnectionLost())
        self._pending.clear()
        for victim in self._offline.requeue(inflight):
            self._drop(victim)

    def _stop(self, error: ClientStopped) -> None:
        if self._stop_error is not None:
            return
        self._stop_error = error
        self._stopped.set()
        for pending in self._pending.values():
            if pending.future is not None:
                _fail(pending.future, error)
        self._pending.clear()
        for item in self._offline.drain():
            if item.future is not None:
                _fail(item.future, error)
        for sub in self._subscriptions.values():
            if sub.retry is not None:
                sub.retry.cancel()
            for waiter in sub.waiters:
                _fail(waiter, error)
            sub.waiters.clear()
        self._events.put_nowait(_END)

    # -- sending -----------------------------------------------------------------------------------

    async def _wait_open(self) -> ClientConnection:
        while True:
            self._raise_if_stopped()
            conn = self._conn
            if conn is not None and self._open.is_set():
                return conn
            opened = asyncio.ensure_future(self._open.wait())
            stopped = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({opened, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                opened.cancel()
                stopped.cancel()

    async def _send_request(self, conn: ClientConnection, pending: _Pending, payload: Any) -> Any:
        assert pending.future is not None
        request_id = str(next(self._ids))
        self._pending[request_id] = pending
        try:
            await self._send(conn, self._encode(request_id, pending.action, pending.channel, payload), request_id)
            return await pending.future
        except ConnectionClosed as exc:
            raise ConnectionLost() from exc
        finally:
            self._pending.pop(request_id, None)

    async def _send_subscribe(self, conn: ClientConnection, channel: str, resume: bool = False) -> None:
        body = self._positions.resume_point(channel) if resume else {}
        pending = _Pending(None, "subscribe", channel, resumed=bool(body))
        request_id = str(next(self._ids))
        self._pending[request_id] = pending
        # On failure the subscription stays wanted: the next connection resubscribes.
        with contextlib.suppress(ConnectionClosed):
            await self._send(conn, self._encode(request_id, "subscribe", channel, body), request_id)

    async def _send_publish(self, conn: ClientConnection, item: QueuedPublish) -> None:
        if item.future is not None and item.future.done():
            return  # withdrawn by a cancelled publish()
        request_id = str(next(self._ids))
        self._pending[request_id] = _Pending(None, "publish", item.channel, outgoing=item)
        frame = self._encode(request_id, "publish", item.channel, item.payload, msg_id=item.msg_id)
        # On failure it is still pending: requeued when the connection's end is handled.
        with contextlib.suppress(ConnectionClosed):
            await self._send(conn, frame, request_id)

    def _drop(self, victim: QueuedPublish) -> None:
        self.stats.offline_dropped += 1
        logger.warning(
            "offline queue full (%d): dropped the oldest publish to %s (%d dropped so far)",
            self._offline.capacity,
            victim.channel,
            self._offline.dropped,
        )
        if victim.future is not None:
            _fail(victim.future, MessageDropped(victim.channel, self._offline.capacity))

    # -- receiving ---------------------------------------------------------------------------------

    def _receive(self, data: str | bytes) -> None:
        try:
            frame = protocol.decode(self._codec, data, self._fields)
        except protocol.FrameError as exc:
            logger.warning("undecodable frame from server: %s", exc)
            return
        if not isinstance(frame, dict):
            logger.warning("frame from server is not an object")
            return
        f = self._fields
        kind = frame.get(f.type)
        if kind == "event":
            self._on_event(frame)
            return
        request_id = frame.get(f.id)
        pending = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if pending is None:
            if kind == "error":
                logger.warning("server error without request: %s", frame.get(f.error))
            return
        if kind == "error":
            error = frame.get(f.error)
            error = error if isinstance(error, dict) else {}
            retry_after_ms = error.get("retry_after_ms")
            failure = RequestError(
                str(error.get("code", "internal")),
                str(error.get("message", "")),
                retry_after_ms if isinstance(retry_after_ms, int) else None,
            )
            self._answered(pending, exc=failure)
        else:
            self._answered(pending, result=frame.get(f.payload))

    def _answered(self, pending: _Pending, *, result: Any = None, exc: RequestError | None = None) -> None:
        if pending.action == "subscribe" and pending.channel is not None:
            self._subscribe_answered(pending.channel, pending.resumed, result, exc)
        elif pending.outgoing is not None and pending.outgoing.future is not None:
            seq = result.get("seq") if isinstance(result, dict) else None
            _settle(pending.outgoing.future, seq, exc)
        if pending.future is not None:
            _settle(pending.future, result, exc)

    def _subscribe_answered(self, channel: str, resumed: bool, result: Any, exc: RequestError | None) -> None:
        sub = self._subscriptions.get(channel)
        if sub is None:
            return  # unsubscribed meanwhile
        if exc is None:
            sub.delays = None
            if isinstance(result, dict):
                self._positions.subscribed(channel, result, resumed=resumed)
        elif classify_error(exc.code) == "retry":
            # The channel is fine, the server is not (yet): keep wanting it and ask again later.
            self._retry_subscribe(channel, sub, exc)
            return
        else:
            del self._subscriptions[channel]
            self._positions.forget(channel)
            logger.warning("subscribe %s refused: %s", channel, exc)
            if not sub.waiters:  # a resubscribe nobody awaits: the application must still hear of it
                payload = {"code": exc.code, "message": exc.message}
                self._push_event(Event("subscription.refused", channel, payload))
        for waiter in sub.waiters:
            _settle(waiter, result, exc)
        sub.waiters.clear()

    def _retry_subscribe(self, channel: str, sub: _Subscription, exc: RequestError) -> None:
        if sub.delays is None:
            sub.delays = self._dialer.new_delays()
        delay = next(sub.delays, self._dialer.retry_later_s)
        if exc.retry_after_ms is not None:
            delay = max(delay, exc.retry_after_ms / 1000)
        logger.info("subscribe %s failed (%s); retrying in %.2f s", channel, exc.code, delay)
        conn = self._conn
        if sub.retry is not None:
            sub.retry.cancel()
        sub.retry = asyncio.get_running_loop().create_task(self._resubscribe_later(channel, conn, delay))

    async def _resubscribe_later(self, channel: str, conn: ClientConnection | None, delay: float) -> None:
        await asyncio.sleep(delay)
        sub = self._subscriptions.get(channel)
        if sub is None or conn is None or self._conn is not conn or self._stop_error is not None:
            return  # left, or a new connection resubscribes every wanted channel itself
        sub.retry = None
        await self._send_subscribe(conn, channel, resume=True)

    def _push_event(self, event: Event) -> None:
        if self._events.qsize() >= self._event_buffer > 0:
            self._events.get_nowait()
            self.stats.events_dropped += 1
        self._events.put_nowait(event)

    def _on_event(self, frame: Mapping[str, Any]) -> None:
        event = self._event_from(frame)
        channel = event.channel
        if channel is not None and event.action in _SERVER_SIDE:
            self._server_side(event, channel)
            return
        if channel is not None and channel not in self._subscriptions:
            return  # a late event for a channel we left
        if event.action == "resync" and channel is not None:
            body = event.payload if isinstance(event.payload, dict) else {}
            seq = body.get("seq")
            epoch = body.get("epoch")
            self._positions.resync(
                channel, seq if isinstance(seq, int) else 0, epoch if isinstance(epoch, str) else None
            )
        elif event.action == "message" and event.seq is not None and channel is not None:
            # Only messages are sequenced: presence and other notices carry no seq (or 0) and
            # must not be taken for duplicates of the channel's position.
            missed = self._positions.accept(channel, event.seq)
            if missed is None:
                self.stats.duplicates += 1
                return
            if missed:
                self.stats.gaps += 1
                logger.warning("gap of %d events on %s before seq %d", missed, channel, event.seq)
                event = Event(event.action, channel, event.payload, event.seq, event.ts, event.sender, missed)
        self._push_event(event)

    def _server_side(self, event: Event, channel: str) -> None:
        """The application's backend changed this connection's subscriptions (server API).

        ``subscription.added``: the channel becomes one of ours, exactly like a subscribe we made
        (its position is recorded and it is resumed on every reconnect until :meth:`unsubscribe`).
        ``subscription.removed``: the server already left it; we stop resuming it. Both are passed
        on to :meth:`events` so the application can update its view.
        """
        if event.action == protocol.SUBSCRIPTION_ADDED:
            if channel not in self._subscriptions:
                self._subscriptions[channel] = _Subscription()
            if isinstance(event.payload, dict):
                self._positions.subscribed(channel, event.payload, resumed=False)
        else:
            self._drop_subscription(channel, f"the server removed the subscription to {channel}")
        self._push_event(event)

    # -- helpers -----------------------------------------------------------------------------------

    def _drop_subscription(self, channel: str, why: str) -> None:
        """Forget ``channel`` (no resubscribe after a reconnect); its pending waiters fail with ``why``."""
        sub = self._subscriptions.pop(channel, None)
        self._positions.forget(channel)
        if sub is not None:
            if sub.retry is not None:
                sub.retry.cancel()
            for waiter in sub.waiters:
                _fail(waiter, ClientError(why))

    def _event_from(self, frame: Mapping[str, Any]) -> Event:
        f = self._fields
        seq, ts, sender = frame.get(f.seq), frame.get(f.ts), frame.get(f.sender)
        channel = frame.get(f.channel)
        return Event(
            action=str(frame.get(f.action, "")),
            channel=channel if isinstance(channel, str) else None,
            payload=frame.get(f.payload),
            seq=seq if isinstance(seq, int) else None,
            ts=ts if isinstance(ts, int) else None,
            sender=sender if isinstance(sender, str) else None,
        )

    def _encode(
        self,
        request_id: str,
        action: str,
        channel: str | None,
        payload: Any,
        *,
        msg_id: str | None = None,
    ) -> bytes:
        f = self._fields
        frame: dict[str, Any] = {
            f.v: protocol.VERSION,
            f.type: "request",
            f.action: action,
            f.id: request_id,
        }
        if channel is not None:
            frame[f.channel] = channel
        if payload is not None:
            frame[f.payload] = payload
        if msg_id is not None:
            frame[f.msg_id] = msg_id
        return protocol.encode(self._codec, frame, f)

    async def _send(self, conn: ClientConnection, frame: bytes, request_id: str = "") -> None:
        if len(frame) > self._largest[0]:
            self._largest = (len(frame), request_id)
        # JSON goes in text frames, MessagePack and protobuf in binary ones (contract §3).
        await conn.send(frame, text=self._codec.is_text)

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    def _raise_if_stopped(self) -> None:
        if self._stop_error is not None:
            raise self._stop_error


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        # Nobody may await a fire-and-forget publish; don't warn about it at garbage collection.
        future.exception()


def _codec_for(subprotocol: str | None) -> protocol.Codec:
    """The codec the server chose; no subprotocol in the answer means JSON (contract §3)."""
    for codec in protocol.Codec:
        if codec.subprotocol == subprotocol:
            return codec
    return protocol.Codec.JSON


def _retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (the delta-seconds form only)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
