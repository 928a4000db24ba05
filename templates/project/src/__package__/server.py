"""Asyncio glue: feeds the sans-I/O core and carries out its effects.

:class:`Server` owns the broker, the transport and one :class:`Connection` per WebSocket. For
each frame it calls :meth:`~.dispatch.Session.receive`, queues the ``Send`` effects, awaits the
broker for commands and queues their responses. Requests of one connection are handled in order,
one at a time, which is what keeps a client's publishes in ``seq`` order.

Fan-out (:meth:`.fanout.Fanout.deliver`) encodes an event once per codec and hands the same ``bytes``
object to every local subscriber's bounded :class:`~.outbox.Outbox`; a writer task per connection
drains it into the socket. Transports that can write synchronously (picows) take two shortcuts
that keep both rules above: a request is handled inside the data callback when it needs no await
(:meth:`Connection.take_frame`), and one flush per loop iteration writes every connection that
got events (:meth:`.fanout.Fanout.mark_dirty`), so a writer task only runs for a congested socket. While
those flushes find about one event per connection (nothing to coalesce), the first message of an
iteration is written to each subscriber at once instead (:meth:`.fanout.Fanout.begin_delivery`). Usage::

    async with Server(settings) as server:   # listening; server.port is the bound port
        await server.wait_stopped()
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from types import TracebackType
from typing import Any, Final, Protocol, cast

from .auth import JwtVerifier
from .broker import (
    Broker,
    BrokerUnavailable,
    ChannelLimitReached,
    ChannelOptions,
    Message,
    PublishNow,
    broker_from_settings,
    sync_publisher,
)
from .channels import ChannelAuth, NamespacePolicy
from .dispatch import (
    CallRpc,
    Close,
    Command,
    Dispatcher,
    Effect,
    HistoryQuery,
    PresenceQuery,
    Publish,
    Send,
    Session,
    Subscribe,
    Unsubscribe,
)
from .fanout import Fanout
from .front_door import FrontDoor
from .handlers import HANDLERS, Handler, RpcContext, RpcError
from .observability import Metrics
from .outbox import Outbox, Overflow
from .protocol import CloseCode, ErrorCode
from .recorder import Recorder
from .settings import Settings
from .transport import (
    Admission,
    FrameLink,
    HandshakeRequest,
    HttpResponse,
    InlineLink,
    Link,
    LinkClosed,
    Transport,
    create_transport,
)

logger = logging.getLogger(__name__)

perf_counter: Final = time.perf_counter
"""Read twice per request: a Final module name is a C static in the mypyc build (no lookups)."""


class Connection:
    """One open WebSocket: its session, outbox and (started on demand) writer task.

    Idle connections hold no task of their own beyond the transport's ``serve`` call: the writer
    starts with the first queued frame, waiters are plain futures created when someone waits, and
    the token-expiry check is a timer handle. That is most of what an idle connection costs.
    """

    __slots__ = (
        "_drain_waiter",
        "_wake",
        "_write_now",
        "close_request",
        "dirty",
        "expiry",
        "fanout",
        "frames",
        "joined",
        "link",
        "outbox",
        "pending",
        "present",
        "reading",
        "send_batch",
        "server",
        "session",
        "text",
        "writer",
    )

    def __init__(self, server: Server, link: Link, session: Session) -> None:
        self.server = server
        self.fanout = server.fanout
        """Read once here: a push that needs the flush calls it without going through the server."""
        self.link = link
        self.session = session
        self.outbox = Outbox(server.settings.outbound_queue_size)
        self.joined: set[str] | None = None
        """Channels this connection joined in the registry (may be ahead of the session's list);
        None until the first join: most idle connections of a big fleet hold few channels, and an
        empty set costs 216 bytes each (bench idle row)."""
        self.present: set[str] | None = None
        """Channels where this connection is counted in presence; None until the first."""
        self.close_request: tuple[int, str] | None = None
        self._wake: asyncio.Future[None] | None = None
        """Pending while the writer waits for frames."""
        self._drain_waiter: asyncio.Future[None] | None = None
        """Pending while the reader waits for room in the outbox."""
        self.writer: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.reading = False
        """The read loop is handling a frame (requests of a connection run one at a time)."""
        self.pending: asyncio.Task[None] | None = None
        """Effects of an inline-received frame that needed an await, finishing in order."""
        self._write_now: Callable[[bytes, bool], bool] | None = None
        self.frames: FrameLink | None = None
        self.send_batch: Callable[..., Awaitable[None]] | None = None
        self.refresh()
        self.dirty = False
        """Queued in :meth:`.fanout.Fanout.mark_dirty` for this loop iteration's flush."""
        self.text = session.codec.is_text
        """Frame type of everything sent (the codec is fixed at the handshake); read per write."""

    def refresh(self) -> None:
        """Read the link's optional fast paths; again when they change under the connection (a
        Socket.IO session upgraded from long-polling to a WebSocket: ``socketio/session.py``'s
        ``rebind``). A link whose fast paths are not usable yet says so with ``fast_paths``."""
        link = self.link
        fast = getattr(link, "fast_paths", True)
        # Optional Link method (transport/picows.py): write one frame now if the socket takes it.
        self._write_now = getattr(link, "write_now", None) if fast else None
        # hasattr, not isinstance: a runtime Protocol check costs tens of microseconds per connection.
        self.frames = cast(FrameLink, link) if fast and hasattr(link, "write_frames") else None
        # Optional Link method (transport/picows.py): everything queued goes out in one write, so
        # the events of one loop iteration reach each subscriber as one buffer of frames.
        self.send_batch = getattr(link, "send_batch", None) if fast else None

    @property
    def closing(self) -> bool:
        return self.close_request is not None

    def push_reply(self, data: bytes) -> None:
        if self.close_request is not None:
            return
        write_now = self._write_now
        writer, wake = self.writer, self._wake  # _writer_idle(), inlined: once per reply
        if (
            write_now is not None
            and len(self.outbox) == 0  # not `not self.outbox`: that goes through the type's slots
            and (writer is None or (wake is not None and not wake.done()))
            and write_now(data, self.text)
        ):
            # Nothing queued before it, so writing straight away keeps the order; saves a task wake-up.
            server = self.server
            if server.recorder is not None:
                server.recorder.outbound(self.session.conn_id, data)
            server.metrics.messages_out += 1
            return
        self._after_push(self.outbox.push_reply(data))

    def push_event(self, channel: str, data: bytes, policy: NamespacePolicy) -> None:
        if self.close_request is None:
            self._after_push(self.outbox.push_event(channel, data, policy.backpressure))

    def write_event_now(self, data: bytes) -> bool:
        """Write one live event at once if nothing is queued before it and the socket takes it;
        False: the caller queues it (:meth:`push_event`). The server tries this for the first
        delivery of a loop iteration while it is not coalescing (see :meth:`Server.deliver`): a
        lone event then reaches the first subscribers while the rest are still being served,
        instead of after all are queued. The checks are inline, not calls: this runs once per
        recipient."""
        frames = self.frames
        if frames is None or self.close_request is not None or len(self.outbox):
            return False
        if self.writer is not None:
            wake = self._wake
            if wake is None or wake.done():
                return False  # the writer task is busy: it owns the socket's order
        if not frames.write_frame(data, self.text):
            return False
        server = self.server
        if server.recorder is not None:
            server.recorder.outbound(self.session.conn_id, data)
        server.metrics.messages_out += 1
        return True

    def _writer_idle(self) -> bool:
        writer, wake = self.writer, self._wake
        return writer is None or (wake is not None and not wake.done())

    def _after_push(self, overflow: Overflow) -> None:
        metrics = self.server.metrics
        if overflow is Overflow.NONE:
            metrics.queue_depth += 1
        elif overflow is Overflow.SLOW_CONSUMER:
            self.abort(CloseCode.SLOW_CONSUMER, "slow consumer")
            return
        else:
            metrics.drop(overflow.value)
        if self.frames is not None and self._writer_idle():
            if not self.dirty:
                self.dirty = True
                self.fanout.mark_dirty(self)
        else:
            self._wake_writer()

    def flush(self) -> int:
        """Write everything queued in one call, from the server's per-iteration flush (picows).

        Replaces a writer-task wake-up per subscriber per message with one loop over the dirty
        connections. A congested socket, or a writer already busy, leaves it to the writer task.
        Returns how many messages were written.
        """
        self.dirty = False
        outbox, frames = self.outbox, self.frames
        if not outbox or frames is None or not self._writer_idle():
            return 0
        if not frames.ready():
            self._wake_writer()  # waits for resume_writing, then drains
            return 0
        batch = [outbox.pop() for _ in range(len(outbox))]
        server = self.server
        server.metrics.queue_depth -= len(batch)
        if server.recorder is not None:
            for data in batch:
                server.recorder.outbound(self.session.conn_id, data)
        frames.write_frames(batch, self.text)
        server.metrics.messages_out += len(batch)
        self._set_drained()
        return len(batch)

    def _wake_writer(self) -> None:
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self.write_loop())
            return
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _set_drained(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_drained(self) -> None:
        """Pause reading requests while the outbox is full, so a client that pipelines requests
        faster than it reads replies is slowed down by TCP instead of being cut off."""
        writer = self.writer
        if len(self.outbox) >= self.outbox.capacity and writer is not None and not writer.done():
            self._drain_waiter = waiter = asyncio.get_running_loop().create_future()
            await waiter

    def request_close(self, code: int, reason: str) -> None:
        """Close after the frames already queued have been sent."""
        if self.close_request is None:
            self.close_request = (code, reason)
            self.server.metrics.close(code)
            self._wake_writer()

    def abort(self, code: int, reason: str) -> None:
        """Close now, discarding queued frames (slow consumer)."""
        dropped = self.outbox.clear()
        self.server.metrics.queue_depth -= dropped
        self.server.metrics.drop("slow_consumer", dropped)
        if self.close_request is None:
            self.request_close(code, reason)
        if self.writer is not None and not self.writer.done():
            # The writer may be stuck in send() on a congested socket; restart it to close promptly.
            self.writer.cancel()
            self.writer = asyncio.create_task(self.write_loop())

    def take_frame(self, data: bytes | str) -> bool:
        """Handle a frame inside the transport's data callback (``Link.inline``, picows).

        Returns False, and the transport queues the frame for :meth:`Link.recv` instead, while
        another request of this connection is still in progress or the outbox is full: requests
        stay one at a time and in order. A request whose effects need a real await (an RPC
        handler, a remote broker) finishes in :attr:`pending`, which the read loop waits for.
        """
        if self.reading or self.pending is not None or self.close_request is not None:
            return False
        if len(self.outbox) >= self.outbox.capacity:
            return False
        server = self.server
        metrics = server.metrics
        metrics.messages_in += 1
        if server.recorder is not None:
            server.recorder.inbound(self.session.conn_id, data)
        started = perf_counter()
        now = server.clock()
        outcome = self.session.answer(data, now)
        if isinstance(outcome, bytes):  # one reply (a ping): no effect list to walk
            self.push_reply(outcome)
        else:
            server.apply_now(self, outcome, now)
        metrics.latency.observe(perf_counter() - started)
        return True

    async def write_loop(self) -> None:
        link, outbox, metrics = self.link, self.outbox, self.server.metrics
        text = self.text
        low_water = outbox.capacity // 2
        loop = asyncio.get_running_loop()
        try:
            while True:
                send_batch = self.send_batch  # read each time: refresh() may set it
                if outbox and send_batch is not None:
                    batch = [outbox.pop() for _ in range(len(outbox))]
                    metrics.queue_depth -= len(batch)
                    if self.server.recorder is not None:
                        for data in batch:
                            self.server.recorder.outbound(self.session.conn_id, data)
                    await send_batch(batch, text=text)
                    metrics.messages_out += len(batch)
                elif outbox:
                    data = outbox.pop()
                    metrics.queue_depth -= 1
                    if self.server.recorder is not None:
                        self.server.recorder.outbound(self.session.conn_id, data)
                    await link.send(data, text=text)
                    metrics.messages_out += 1
                elif self.close_request is not None:
                    break
                else:
                    self._set_drained()
                    self._wake = wake = loop.create_future()
                    await wake
                    continue
                if len(outbox) <= low_water:
                    self._set_drained()
            code, reason = self.close_request
            await link.close(code, reason)
        except LinkClosed:
            pass
        finally:
            self._set_drained()  # never leave the reader waiting on a dead writer


class _Resumed:
    """Await a coroutine that :meth:`Server.apply_now` stepped once and that then suspended.

    Why the server steps coroutines by hand at all: with a broker that never waits for I/O (a
    :class:`~.broker.base.SyncPublisher`) a subscribe, history or presence request then completes
    inside the transport's data callback, its reply written in the same callback, instead of
    costing a task and a loop iteration. This class is the rare other case's safety net.

    ``yield``-delegates the rest of it to the task awaiting this object, passing values and
    exceptions through, exactly as ``await`` would have if a task had run it from the start.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, list[Effect]], first: Any) -> None:
        self._coro, self._first = coro, first

    def __await__(self) -> Generator[Any, Any, list[Effect]]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown into the awaiting task: pass it on
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return cast("list[Effect]", done.value)
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return cast("list[Effect]", done.value)


class AppHooks(Protocol):
    """The application's event hooks: ``hooks.py``, which exists when the spec enables a hook."""

    publish_enabled: bool

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def connect(self, session: Session, admission: Admission) -> tuple[int, str] | None: ...

    async def subscribe(self, session: Session, cmd: Subscribe) -> list[Effect] | None: ...

    async def publish(self, session: Session, cmd: Publish) -> Publish | list[Effect]: ...

    def disconnected(self, session: Session, code: int, reason: str) -> None: ...


class Server:
    """The WebSocket server: handshake policy, sessions, fan-out and shutdown."""

    def __init__(
        self,
        settings: Settings,
        *,
        broker: Broker | None = None,
        handlers: Mapping[str, Handler] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics()
        self.broker: Broker = broker or broker_from_settings(settings)
        self.handlers = dict(HANDLERS if handlers is None else handlers)
        self.verifier = (
            JwtVerifier(
                settings.jwt_key,
                settings.jwt_algorithms,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway_s=settings.jwt_leeway_s,
            )
            if settings.auth_enabled
            else None
        )
        self.dispatcher = Dispatcher(settings, rpc_names=self.handlers, verifier=self.verifier)
        self.hooks: AppHooks | None = None
        """The application's hooks; None when the project renders none (no ``hooks.py``)."""
        if settings.hook_targets:  # raises SettingsError for an enabled hook without its URL
            self.hooks = cast(AppHooks, importlib.import_module(".hooks", __package__).Hooks(settings))
        self.front_door = FrontDoor(self, self.verifier, clock)
        """Handshake policy and per-IP accounting (``front_door.py``): once per TCP connection."""
        self.limiter = self.front_door.limiter
        self.handshakes = self.front_door.handshakes
        self.fanout = Fanout(self)
        """Delivery to local subscribers and the per-iteration flush (``fanout.py``)."""
        self.registry = self.fanout.registry
        self.connections: set[Connection] = set()
        self._users: dict[str, Connection | set[Connection]] = {}
        """User id -> this instance's connection of that user, or a set once the user has two
        (control messages act on them; :meth:`connections_of` reads it). Most users hold one
        connection, and an empty set alone costs more than 200 bytes per idle connection."""
        self.control: Any = None
        """The control plane (``control.py``'s ``ControlPlane``) when step 2 rendered it, else None."""
        self.api: Any = None
        """The HTTP server API (``api.py``'s ``ApiServer``) when rendered and keys are set, else None."""
        self._background: set[asyncio.Task[None]] = set()
        self.shutting_down = False
        self.host = settings.host
        self.port = settings.port
        self._transport: Transport | None = None
        self._stopped = asyncio.Event()
        self.recorder = Recorder.from_env()
        """Opt-in message-flow recording (``WS_RECORD_PATH``); None when off."""
        self._channel_options: dict[str, tuple[NamespacePolicy, ChannelOptions]] = {}
        # The fast path is a capability of the broker, looked up once here (never per request).
        sync = sync_publisher(self.broker)
        self._publish_sync: PublishNow | None = None if sync is None else sync.publish_now
        """The broker's :meth:`~.broker.base.SyncPublisher.publish_now`, bound once: the server
        publishes through it without a coroutine (:meth:`_publish_now`). None: plain ``await``."""
        self._sync_now = sync is not None and sync.clock is clock
        """The broker reads the server's clock: :meth:`_publish_now` hands it the request's reading
        instead of letting it read the clock again (a test may give each its own)."""
        self.inline_commands = sync is not None
        """Broker commands complete without suspending (a :class:`~.broker.base.SyncPublisher`
        promises it), so :meth:`apply_now` may run them inside the transport's data callback. A
        remote broker's calls always wait for the network and may need a task (timeouts), so they
        never run inline."""
        self._publish_hook = self.hooks is not None and self.hooks.publish_enabled
        """Client publishes go to the app's publish hook first: never :meth:`_publish_now`."""

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect the broker and start listening; ``self.port`` is then the bound port."""
        await self.broker.start(self.fanout.deliver)
        try:
            if self.hooks is not None:
                await self.hooks.start()
            await self._start_extensions()
            self._transport = create_transport(self, self.settings)
            self.host, self.port = await self._transport.start()
        except BaseException:
            await self._stop_extensions()
            if self.hooks is not None:
                with contextlib.suppress(Exception):
                    await self.hooks.aclose()
            raise
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]  # "asyncio" or "uvloop"
        if self.settings.transport == "asgi":  # mounted: the host app's ASGI server owns the socket
            logger.info(
                "serving %s inside the host app's ASGI server (%s loop)",
                self.settings.path,
                loop,
                extra={"event": "listening", "mounted": True, "loop": loop},
            )
            return
        logger.info(
            "listening on ws://%s:%d%s (%s, %s loop)",
            self.host,
            self.port,
            self.settings.path,
            self.settings.transport,
            loop,
            extra={"event": "listening", "host": self.host, "port": self.port, "loop": loop},
        )

    async def stop(self) -> None:
        """Stop accepting, close every connection with 1001, release the broker. Bounded by the grace."""
        if self.shutting_down:
            await self._stopped.wait()
            return
        self.shutting_down = True
        grace = self.settings.shutdown_grace_s
        logger.info("shutting down", extra={"event": "shutdown", "connections": len(self.connections)})
        if self.settings.shutdown_drain_s > 0:
            # /readyz answers 503 (and upgrades are refused) while connections keep working, so a
            # load balancer polling readiness takes this instance out before they are closed.
            await asyncio.sleep(self.settings.shutdown_drain_s)
        if self._transport is not None:
            await self._transport.stop(grace)
        await self._stop_extensions()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(grace):
                await self.broker.aclose()
        if self.hooks is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(grace):
                    await self.hooks.aclose()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- optional parts: control plane and server API ---------------------------------------

    async def _start_extensions(self) -> None:
        """Start what step 2 rendered for the application's backend: the control plane
        (``control.py``: disconnect/subscribe users, channel counts, on every instance) and the
        HTTP server API (``api.py``, its own listener). Projects without them have neither file."""
        control = _optional_module("control")
        if control is not None:
            self.control = control.ControlPlane(self)
            await self.control.start()
        api = _optional_module("api")
        if api is not None:
            self.api = await api.start_api(self)

    async def _stop_extensions(self) -> None:
        if self.api is not None:
            await self.api.stop()
        if self.control is not None:
            await self.control.stop()
        for task in list(self._background):
            task.cancel()

    def apply_later(self, conn: Connection, effects: list[Effect]) -> None:
        """Carry out effects a connection did not ask for (a server-side subscribe from the
        control plane) in their own task; the session guards its state as for its own requests.
        Frames before the first command are queued now, so that they precede the answer to any
        request the client sends next (``subscription.removed`` before a new ``subscribe`` reply)."""
        first_command = next((i for i, e in enumerate(effects) if not isinstance(e, Send)), len(effects))
        for effect in effects[:first_command]:
            conn.push_reply(cast(Send, effect).data)
        effects = effects[first_command:]
        if not effects:
            return
        task = asyncio.get_running_loop().create_task(self._apply_unrequested(conn, effects))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _apply_unrequested(self, conn: Connection, effects: list[Effect]) -> None:
        session = conn.session
        # The client may have subscribed again since the backend removed the channel (its own
        # requests are not serialized with these): leaving now would take the new subscription's
        # membership away.
        effects = [e for e in effects if not (type(e) is Unsubscribe and session.follows(e.channel))]
        try:
            await self._apply(conn, effects)
        except Exception:
            logger.exception("server-side request for %s failed", conn.session.conn_id)

    # -- handshake (the front door decides; these answer the transport's App calls) ---------

    def handshake(self, request: HandshakeRequest) -> HttpResponse | Admission:
        """Decide an HTTP request: plain HTTP routes, a refusal, or an admitted WebSocket."""
        return self.front_door.handshake(request)

    def handshake_started(self, remote_ip: str) -> bool:
        """:meth:`~.transport.App.handshake_started`; a trusted proxy only counts in the total."""
        return self.front_door.handshake_started(remote_ip)

    def handshake_ended(self, remote_ip: str) -> None:
        self.front_door.handshake_ended(remote_ip)

    def connection_cut(self, code: int, reason: str) -> None:
        self.metrics.close(code)
        logger.info("connection cut: %s", reason, extra={"event": "cut", "code": code, "reason": reason})

    # -- connections ------------------------------------------------------------------------

    async def serve(self, link: Link, admission: Admission) -> None:
        """Run one connection until it closes."""
        open_link = getattr(admission, "open_link", None)
        if open_link is not None:  # Socket.IO (socketio/): its own handshake runs over the WebSocket first
            opened = await open_link(link)
            if opened is None:
                return
            link = opened
        conn_id = secrets.token_hex(8)
        session = self.dispatcher.session(conn_id, admission.identity, admission.codec, self.clock())
        conn = Connection(self, link, session)
        attach = getattr(link, "attach", None)
        if attach is not None:  # Socket.IO: a recovery record is made of the session and its queue
            attach(conn)
        self._check_expiry(conn)
        self.connections.add(conn)
        user = admission.identity.user
        if user is not None:
            self._remember_user(user, conn)
        self.metrics.connections += 1
        logger.debug("open %s user=%s", conn_id, admission.identity.user)
        if self.recorder is not None:
            self.recorder.opened(conn_id, admission.identity.user, admission.subprotocol)
        inline = cast(InlineLink, link) if hasattr(link, "inline") else None
        hooks, allowed = self.hooks, False
        try:
            # The connect hook decides before any request is handled (they wait in the link).
            refusal = None if hooks is None else await hooks.connect(session, admission)
            allowed = refusal is None
            if refusal is not None:
                conn.request_close(*refusal)
            elif inline is not None:
                inline.inline = conn.take_frame
            await self._read_loop(conn)
        finally:
            if inline is not None:
                inline.inline = None
            if conn.expiry is not None:
                conn.expiry.cancel()
            pending = conn.pending
            if pending is not None:
                # Let an inline-received request (a subscribe on a remote broker, an RPC) finish
                # before cleanup, as the read loop would have: else it could join a channel after
                # cleanup left it. Bounded by the grace, then cancelled.
                await asyncio.wait({pending}, timeout=self.settings.shutdown_grace_s)
                pending.cancel()
            await self._cleanup(conn)
            if hooks is not None and allowed:  # fire and forget: never delays this cleanup
                code = link.close_code if link.close_code is not None else 1006
                hooks.disconnected(session, code, conn.close_request[1] if conn.close_request else "")
            self.connections.discard(conn)
            if user is not None:
                self._forget_user(user, conn)
            self.metrics.connections -= 1
            admission.release()
            if self.recorder is not None:
                self.recorder.closed(conn_id, link.close_code)
            logger.debug("closed %s code=%s", conn_id, link.close_code)

    def connections_of(self, user: str) -> list[Connection]:
        """This instance's open connections of ``user`` (a copy: callers may close them)."""
        held = self._users.get(user)
        if held is None:
            return []
        return [held] if type(held) is Connection else list(cast("set[Connection]", held))

    def _remember_user(self, user: str, conn: Connection) -> None:
        held = self._users.get(user)
        if held is None:
            self._users[user] = conn
        elif type(held) is Connection:
            self._users[user] = {held, conn}
        else:
            cast("set[Connection]", held).add(conn)

    def _forget_user(self, user: str, conn: Connection) -> None:
        held = self._users.get(user)
        if held is conn:
            del self._users[user]
        elif held is not None and type(held) is not Connection:
            others = cast("set[Connection]", held)
            others.discard(conn)
            if len(others) == 1:
                self._users[user] = next(iter(others))

    async def _read_loop(self, conn: Connection) -> None:
        link, session, metrics, clock = conn.link, conn.session, self.metrics, self.clock
        while not conn.closing:
            await conn.wait_drained()
            if conn.closing:
                return
            try:
                data = await link.recv()
            except LinkClosed:
                return
            if conn.closing:
                return
            conn.reading = True
            try:
                if conn.pending is not None:  # an earlier, inline-received request goes first
                    await conn.pending
                metrics.messages_in += 1
                if self.recorder is not None:
                    self.recorder.inbound(session.conn_id, data)
                started = perf_counter()
                await self._apply(conn, session.receive(data, clock()))
                metrics.latency.observe(perf_counter() - started)
            finally:
                conn.reading = False

    def mark_dirty(self, conn: Connection) -> None:
        """:meth:`.fanout.Fanout.mark_dirty` (connections call it there directly)."""
        self.fanout.mark_dirty(conn)

    def deliver(self, message: Message) -> None:
        """:meth:`.fanout.Fanout.deliver`, the broker's callback (which the broker is given
        directly, so a delivery does not pass through here)."""
        self.fanout.deliver(message)

    def _check_expiry(self, conn: Connection) -> None:
        """Close with 4001 once the token's ``exp`` passes; a timer, not a task per connection."""
        conn.expiry = None
        expires_at = conn.session.expires_at
        if conn.closing or expires_at is None:
            return
        now = self.clock()
        if now < expires_at:  # auth.refresh may move the deadline: look again when it is due
            conn.expiry = asyncio.get_running_loop().call_later(expires_at - now, self._check_expiry, conn)
            return
        self.apply_now(conn, conn.session.expire(now), now)

    def apply_now(self, conn: Connection, effects: list[Effect], now: float) -> None:
        """Carry out ``effects`` without awaiting when they allow it, else finish them in order
        in ``conn.pending``. Commands complete here only with the in-process broker, whose
        coroutines never suspend; RPC handlers are user code and always get a task. ``now`` is
        the clock reading the effects were produced at, reused for the completions' ``ts``."""
        for index, effect in enumerate(effects):
            if isinstance(effect, Send):
                conn.push_reply(effect.data)
            elif isinstance(effect, Close):
                conn.request_close(effect.code, effect.reason)
            elif self._publish_sync is not None and type(effect) is Publish and not self._publish_hook:
                outcome = self._publish_now(conn.session, effect, self._publish_sync, now)
                if isinstance(outcome, bytes):
                    conn.push_reply(outcome)
                else:
                    self.apply_now(conn, outcome, now)
            elif self.inline_commands and not isinstance(effect, CallRpc):
                # Step the command's coroutine by hand: with a broker that never suspends it
                # finishes here (StopIteration), so a subscribe or history read answers within
                # the frame callback, with no task. Should it suspend after all, _Resumed hands
                # the rest to a task, exactly as if the task had run it from the start.
                coro = self._run(conn, effect)
                try:
                    first = coro.send(None)
                except StopIteration as done:
                    self.apply_now(conn, done.value, now)
                    continue
                rest = effects[index + 1 :]
                conn.pending = asyncio.get_running_loop().create_task(self._finish(conn, _Resumed(coro, first), rest))
                return
            else:
                conn.pending = asyncio.get_running_loop().create_task(self._finish(conn, None, effects[index:]))
                return

    def _publish_now(
        self, session: Session, cmd: Publish, publish_now: PublishNow, now: float
    ) -> bytes | list[Effect]:
        """:meth:`_run` for a publish to a :class:`~.broker.base.SyncPublisher`, without a
        coroutine (the most frequent request; same outcome and errors). The ack comes back as
        its bytes, an error as effects."""
        policy = cmd.policy
        cached = self._channel_options.get(policy.name)  # _options() inlined: once per request
        options = cached[1] if cached is not None and cached[0] is policy else self._options(policy)
        try:
            published = publish_now(
                cmd.channel, cmd.payload, options, session.identity.user, cmd.msg_id, now if self._sync_now else None
            )
        except ChannelLimitReached as exc:
            return session.failed(cmd, ErrorCode.TOO_MANY_CHANNELS, str(exc))
        except Exception:
            logger.exception("%s failed", cmd.action)
            return session.failed(cmd, ErrorCode.INTERNAL, "internal error")
        return session.publish_ack(cmd, published, now)

    async def _finish(self, conn: Connection, started: _Resumed | None, effects: list[Effect]) -> None:
        try:
            if started is not None:
                await self._apply(conn, await started)
            await self._apply(conn, effects)
        except Exception:
            logger.exception("request of %s failed", conn.session.conn_id)
            conn.abort(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            conn.pending = None

    async def _apply(self, conn: Connection, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                conn.push_reply(effect.data)
            elif isinstance(effect, Close):
                conn.request_close(effect.code, effect.reason)
            else:
                await self._apply(conn, await self._run(conn, effect))

    async def _run(self, conn: Connection, cmd: Command | CallRpc) -> list[Effect]:
        """Carry out one command; always returns the effects holding its one response."""
        session = conn.session
        try:
            if isinstance(cmd, CallRpc):
                ctx = RpcContext(session.identity.user, session.conn_id, cmd.channel)
                try:
                    result = await self.handlers[cmd.name](ctx, cmd.payload)
                except RpcError as exc:
                    return session.failed(cmd, exc.code, exc.message)
                return session.rpc_returned(cmd, result, self.clock())
            if isinstance(cmd, Publish):
                if self._publish_hook and self.hooks is not None:
                    checked = await self.hooks.publish(session, cmd)
                    if not isinstance(checked, Publish):
                        return checked  # refused, or the hook failed: nothing is broadcast
                    cmd = checked  # the app may have rewritten the payload
                published = await self.broker.publish(
                    cmd.channel,
                    cmd.payload,
                    self._options(cmd.policy),
                    sender=session.identity.user,
                    msg_id=cmd.msg_id,
                )
                return session.published(cmd, published, self.clock())
            if isinstance(cmd, Subscribe):
                return await self._subscribe(conn, cmd)
            if isinstance(cmd, Unsubscribe):
                await self._leave(conn, cmd.channel, cmd.policy)
                return session.unsubscribed(cmd, self.clock())
            if isinstance(cmd, HistoryQuery):
                history = await self.broker.history(cmd.channel, cmd.since_seq, self._options(cmd.policy), limit=cmd.limit)
                return session.history_loaded(cmd, history, self.clock())
            if isinstance(cmd, PresenceQuery):
                members = await self.broker.presence_members(cmd.channel)
                return session.presence_loaded(cmd, members, self.clock())
        except ChannelLimitReached as exc:
            return session.failed(cmd, ErrorCode.TOO_MANY_CHANNELS, str(exc))
        except BrokerUnavailable as exc:
            logger.warning("broker unavailable for %s: %s", cmd.action, exc)
            return session.failed(cmd, ErrorCode.BROKER_UNAVAILABLE, "message broker unavailable, retry later")
        except Exception:
            logger.exception("%s failed", cmd.action)
            return session.failed(cmd, ErrorCode.INTERNAL, "internal error")
        raise AssertionError(f"unhandled command {cmd!r}")

    def _options(self, policy: NamespacePolicy) -> ChannelOptions:
        """``policy.options``, built once per namespace instead of once per request."""
        cached = self._channel_options.get(policy.name)
        if cached is None or cached[0] is not policy:
            cached = self._channel_options[policy.name] = (policy, policy.options)
        return cached[1]

    async def _subscribe(self, conn: Connection, cmd: Subscribe) -> list[Effect]:
        session, broker, channel = conn.session, self.broker, cmd.channel
        # A server-side subscribe (no request id: the backend's API call or publisher) was decided by
        # the application already; only a client's own subscribe asks the subscribe hook.
        if cmd.id and cmd.policy.auth is ChannelAuth.HOOK and channel not in session.grants and self.hooks is not None:
            refused = await self.hooks.subscribe(session, cmd)  # the app decides this namespace
            if refused is not None:
                return refused
        joined = conn.joined
        if joined is None:
            joined = conn.joined = set()
        if channel not in joined:
            joined.add(channel)
            if self.registry.join(channel, conn):
                try:
                    await broker.subscribe(channel)
                except BaseException:
                    joined.discard(channel)
                    self.registry.leave(channel, conn)
                    raise
        members = None
        if cmd.policy.presence:
            present = conn.present
            if present is None:
                present = conn.present = set()
            if channel not in present:
                present.add(channel)
                user = session.presence_user
                if await broker.presence_join(channel, user, session.conn_id):
                    await broker.announce(channel, {"presence": "join", "user": user})
            members = await broker.presence_members(channel)
        replay = cmd.since_seq is not None and cmd.policy.history_enabled
        history = await broker.history(
            channel,
            cmd.since_seq or 0,
            self._options(cmd.policy),
            limit=self.settings.max_replay if replay else 0,
        )
        self.fanout.followed_epochs.pop(channel, None)  # this session's epoch comes from its own read
        return session.subscribed(cmd, history, members, self.clock())

    async def _leave(self, conn: Connection, channel: str, policy: NamespacePolicy | None) -> None:
        """Leave ``channel`` locally, then at the broker; broker trouble is logged, never raised."""
        session = conn.session
        if conn.joined is not None:
            conn.joined.discard(channel)
        try:
            if self.registry.leave(channel, conn):
                self.fanout.followed_epochs.pop(channel, None)
                await self.broker.unsubscribe(channel)
            present = conn.present
            if present is not None and channel in present:
                present.discard(channel)
                user = session.presence_user
                if await self.broker.presence_leave(channel, user, session.conn_id):
                    await self.broker.announce(channel, {"presence": "leave", "user": user})
        except Exception as exc:
            logger.warning("leaving %s at the broker failed: %s", channel, exc)

    async def _cleanup(self, conn: Connection) -> None:
        grace = self.settings.shutdown_grace_s
        try:
            async with asyncio.timeout(grace):
                for channel in sorted((conn.joined or set()) | (conn.present or set())):
                    await self._leave(conn, channel, None)
        except TimeoutError:
            logger.warning("cleanup of %s timed out", conn.session.conn_id)
        writer = conn.writer
        if writer is not None and not writer.done():
            if conn.closing and conn.link.close_code is None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(grace):
                        await asyncio.shield(writer)
            writer.cancel()

def _optional_module(name: str) -> Any:
    """``.name`` of this package when step 2 rendered it, else None (a missing dependency of a
    rendered module still raises)."""
    package = __name__.rpartition(".")[0]
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{package}.{name}":
            return None
        raise
