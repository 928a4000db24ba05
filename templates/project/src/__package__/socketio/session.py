"""One Socket.IO connection: the Engine.IO/Socket.IO handshake, then a :class:`~..transport.Link`.

:meth:`SocketIOGate.open` runs between the WebSocket upgrade and the server's session: it sends
Engine.IO's OPEN, waits (within ``handshake_timeout_s``) for the client's CONNECT to ``/`` and,
when the upgrade carried no token, verifies the ``auth`` payload's ``token`` exactly as the
native endpoint verifies its token. What it returns, a :class:`SocketIOLink`, is what the server
then reads and writes like any WebSocket: its :meth:`~SocketIOLink.recv` yields the core's request
envelopes and its :meth:`~SocketIOLink.send` turns the core's frames into Socket.IO packets
(``bridge.py``). Engine.IO's heartbeat (the server pings, the client pongs within
``socketio_ping_timeout_s``) runs on a timer, not a task: an idle connection costs one timer.

Malformed packets and packets the server does not take are answered with an ``error`` event;
``bad_frames_before_close`` of them close the connection with 4400, as bad frames do on the
native endpoint. Binary attachments (``attachments.py``): a BINARY_EVENT header waits in an
:class:`~.attachments.Assembly` for its binary frames, then goes to the core like any EVENT; a
binary frame with no header before it, or a Socket.IO packet before the last attachment, is a bad
packet; a header and its attachments together over ``max_payload_bytes`` close with 1009. A
binary packet to send (:class:`~.attachments.Multipart`) is written as one unit: its header and
attachments are never interleaved with another Socket.IO packet of the connection.

Connection state recovery (``socketio_recovery_s`` > 0) is ``recovery.py``'s: the gate answers a
CONNECT with a ``pid`` and resumes a dropped session under it; the links record the offsets they
write and, when their transport drops, leave a record of their session behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from ..auth import ANONYMOUS, AuthError, JwtVerifier
from ..limits import StrikeCounter, TokenBucket
from ..protocol import CloseCode
from ..transport import Admission, FrameLink, InlineLink, Link, LinkClosed
from .attachments import Assembly, AttachmentError, Multipart, check_placeholders
from .bridge import Bridge
from .packets import (
    MAIN_NAMESPACE,
    PING,
    PacketError,
    SocketType,
    decode_socket,
    encode_connect,
    encode_connect_error,
    encode_event,
    encode_open,
)
from .recovery import RING_SIZE, Record, Recovery, claimed, connect_answer, new_pid, resubscriptions

if TYPE_CHECKING:
    from ..server import Connection
    from ..settings import Settings

logger = logging.getLogger(__name__.rpartition(".")[0].rpartition(".")[0] + ".server")

_RUNNING: set[asyncio.Task[None]] = set()
"""Heartbeat writes in flight (asyncio keeps only weak references to tasks)."""
MAX_CONNECT_ATTEMPTS: Final = 3
"""CONNECT packets refused (bad token, unknown namespace) before the connection is closed."""


@dataclass(slots=True)
class Connected:
    """A CONNECT answered: the socket id, and with recovery on the pid, the offset the client
    connected with and, when it resumed a session, where each of its channels resumes."""

    sid: str
    pid: str | None = None
    offset: str | None = None
    resume: dict[str, tuple[int, str | None]] | None = None


@dataclass(slots=True)
class SocketIOAdmission(Admission):
    """An admitted Socket.IO upgrade; the server calls :meth:`open_link` before its session starts."""

    gate: SocketIOGate | None = None
    authenticated: bool = False
    """The upgrade carried a valid token (or auth is off): the CONNECT's ``auth`` is not needed."""

    async def open_link(self, link: Link) -> Link | None:
        """The Engine.IO/Socket.IO handshake over ``link``; None: refused (the link is closed)."""
        assert self.gate is not None
        return await self.gate.open(link, self)


class SocketIOGate:
    """What every Socket.IO connection of a server shares: settings, verifier, translation."""

    def __init__(
        self,
        settings: Settings,
        verifier: JwtVerifier | None,
        clock: Callable[[], float],
        cut: Callable[[int, str], None],
        reject: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.clock = clock
        self.cut = cut
        """The server's :meth:`~..server.Server.connection_cut`: closes decided here are counted."""
        self.reject = reject
        """The server's ``metrics.reject``: a refused CONNECT counts like a refused upgrade."""
        window = settings.socketio_recovery_s
        self.recovery = Recovery(window, time.monotonic) if window > 0 else None
        """Connection state recovery (``recovery.py``); None when ``socketio_recovery_s`` is 0."""
        self.bridge = Bridge(settings.envelope, offsets=self.recovery is not None)
        self.open_packet_fields = (
            int(settings.socketio_ping_interval_s * 1000),
            int(settings.socketio_ping_timeout_s * 1000),
            settings.max_payload_bytes,
        )

    async def open(self, link: Link, admission: SocketIOAdmission) -> SocketIOLink | None:
        """See the module docstring; closes ``link`` itself when it refuses."""
        sid: str = getattr(link, "sid", None) or secrets.token_urlsafe(15)
        upgrades: tuple[str, ...] = getattr(link, "upgrades", ())
        try:
            await link.send(encode_open(sid, *self.open_packet_fields, upgrades), text=True)
            async with asyncio.timeout(self.settings.handshake_timeout_s):
                refused = 0
                while refused < MAX_CONNECT_ATTEMPTS:
                    connected = await self._connect(link, admission, sid)
                    if type(connected) is Connected:
                        stop_keepalive = getattr(link, "stop_keepalive", None)
                        if stop_keepalive is not None:  # Engine.IO's heartbeat replaces the WebSocket one
                            stop_keepalive()
                        if hasattr(link, "write_frames"):
                            kind: type[SocketIOLink] = SocketIOFrameLink
                        elif hasattr(link, "on_switch"):  # long-polling: may move to a WebSocket
                            kind = SocketIOUpgradeLink
                        else:
                            kind = SocketIOLink
                        return kind(link, self, connected, admission.identity.user)
                    refused += 1
            await self._refuse(link, CloseCode.POLICY_VIOLATION, "Socket.IO CONNECT refused")
        except TimeoutError:
            await self._refuse(link, CloseCode.POLICY_VIOLATION, "no Socket.IO CONNECT in time")
        except PacketError as exc:
            await self._refuse(link, CloseCode.PROTOCOL_VIOLATION, str(exc)[:120])
        except LinkClosed:
            pass
        return None

    async def _connect(self, link: Link, admission: SocketIOAdmission, sid: str) -> str | Connected:
        """Read one CONNECT and answer it; the refusal's message, or what was agreed.

        Raises:
            PacketError: anything but a CONNECT came first.
        """
        frame = await link.recv()
        if type(frame) is not str or not frame.startswith("4"):
            raise PacketError("expected a Socket.IO CONNECT packet first")
        packet = decode_socket(frame[1:])
        if packet.type is not SocketType.CONNECT:
            raise PacketError("expected a Socket.IO CONNECT packet first")
        if packet.namespace != MAIN_NAMESPACE:
            message = f"unknown namespace {packet.namespace[:64]!r}: this server serves '/'"
            await link.send(encode_connect_error(packet.namespace, message), text=True)
            return message
        if not admission.authenticated:
            problem = self._authenticate(packet.data, admission)
            if problem is not None:
                self.reject("missing_token" if problem.startswith("missing") else "invalid_token")
                logger.info(
                    "Socket.IO CONNECT refused: %s", problem, extra={"event": "refused", "reason": problem}
                )
                await link.send(
                    encode_connect_error(MAIN_NAMESPACE, problem, {"code": "unauthorized"}), text=True
                )
                return problem
        recovery = self.recovery
        if recovery is None:
            await link.send(encode_connect(MAIN_NAMESPACE, sid), text=True)
            return Connected(sid)
        connected = Connected(sid)
        claim = claimed(packet.data)
        if claim is not None:
            pid, connected.offset = claim
            record = recovery.take(pid, admission.identity.user)
            resume = None if record is None else record.resume(connected.offset)
            if record is not None and resume is not None:
                connected.sid, connected.pid, connected.resume = record.sid, pid, resume
                logger.info(
                    "Socket.IO session %s resumed on %d channels",
                    record.sid,
                    len(resume),
                    extra={"event": "recovered", "channels": len(resume)},
                )
        if connected.pid is None:
            connected.pid = new_pid()
        await link.send(connect_answer(connected.sid, connected.pid), text=True)
        return connected

    def _authenticate(self, auth: Any, admission: SocketIOAdmission) -> str | None:
        """Verify the CONNECT's ``auth.token`` like the native endpoint's token; why not, or None."""
        if self.verifier is None:
            admission.identity, admission.authenticated = ANONYMOUS, True
            return None
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            return "missing token: connect with auth {token}"
        try:
            admission.identity = self.verifier.verify(token, self.clock())
        except AuthError as exc:
            return exc.reason
        admission.authenticated = True
        return None

    async def _refuse(self, link: Link, code: int, reason: str) -> None:
        self.cut(code, reason)
        with contextlib.suppress(LinkClosed):
            await link.close(code, reason)


class SocketIOLink:
    """:class:`~..transport.Link` speaking Socket.IO over a WebSocket link; see the module docstring."""

    __slots__ = (
        "__weakref__",
        "_assembly",
        "_awaiting_pong",
        "_bridge",
        "_closed",
        "_conn",
        "_control",
        "_gate",
        "_link",
        "_next_id",
        "_recoverable",
        "_resubscribe",
        "_ring",
        "_start",
        "_strikes",
        "_timer",
        "_writing",
        "pid",
        "sid",
        "user",
    )

    def __init__(self, link: Link, gate: SocketIOGate, connected: Connected, user: str | None = None) -> None:
        settings = gate.settings
        self._link = link
        self._gate = gate
        self._bridge = gate.bridge
        self.sid = connected.sid
        self.user = user
        self._next_id = 0
        # Connection state recovery (recovery.py), when the gate has it on.
        self.pid = connected.pid
        self._start = connected.offset
        """Where the client stood when this link began: the ring's first entry."""
        self._ring: deque[str | None] | None = None
        """Offsets written, oldest first (created with the first message written)."""
        self._conn: Connection | None = None
        self._recoverable = connected.pid is not None
        """Leave a record when the link ends; off once the client leaves or the server decides a close."""
        self._resubscribe: deque[bytes] | None = None
        if connected.pid is not None:
            cast(Recovery, gate.recovery).live[connected.pid] = self  # weakly: a lost link cannot leak
            if connected.resume:
                self._resubscribe = deque(resubscriptions(gate.bridge, connected.resume))
        self._strikes: StrikeCounter | None = None
        """Created on the first bad packet: well-behaved connections never need one."""
        self._control: TokenBucket | None = None
        """Created on the first packet that is not a request (pongs aside): rarely needed."""
        self._awaiting_pong = False
        self._closed = False
        self._assembly: Assembly | None = None
        """The binary packet whose attachments are being received, if any."""
        self._writing: asyncio.Future[None] | None = None
        """Pending while a binary packet's frames are being written (other packets wait)."""
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_later(
            settings.socketio_ping_interval_s, self._tick
        )

    # -- Link -------------------------------------------------------------------------------

    async def recv(self) -> bytes | str:
        """The next request envelope; Engine.IO/Socket.IO housekeeping is handled on the way.
        A resumed session's subscribes come first."""
        if self._resubscribe is not None:
            return await self._next_resubscription()
        try:
            while True:
                frame = await self._link.recv()
                if type(frame) is str and frame.startswith("42") and self._assembly is None:
                    request = await self._event(frame)  # an EVENT on "/": nearly every frame
                    if request is not None:
                        return request
                elif type(frame) is not str or self._assembly is not None or frame.startswith(("45", "46")):
                    request = await self._binary(frame)
                    if request is not None:
                        return request
                else:
                    await self._other(frame)
        except LinkClosed:
            self._stop_timer()
            self._ended()
            raise

    async def send(self, data: bytes, *, text: bool) -> None:
        bridge = self._bridge
        packet = bridge.outbound(data)
        if packet is None:
            return
        if bridge.offset is not None:
            self._wrote(bridge.offset)
        if type(packet) is bytes:
            await self._link.send(packet, text=True)
        else:
            await self._send_parts(cast(Multipart, packet))

    async def close(self, code: int, reason: str) -> None:
        """The server closes (its decision: shutdown, token expiry, slow consumer): no record."""
        self._recoverable = False
        self._ended()
        await self._shut(code, reason)

    async def _shut(self, code: int, reason: str) -> None:
        self._stop_timer()
        await self._link.close(code, reason)

    @property
    def close_code(self) -> int | None:
        return self._link.close_code

    def rebind(self, link: Link) -> None:
        """The session goes on over ``link`` (a long-polling session upgraded to a WebSocket,
        ``polling.py``): reads and writes use it directly from now on. Called when everything
        received before it was read; what was written before is already on it, in order."""
        self._link = link

    # -- packets ----------------------------------------------------------------------------

    async def _event(self, frame: str) -> bytes | None:
        request = self._request(frame)
        if type(request) is str:
            await self._strike(request)
            return None
        return request  # type: ignore[return-value]

    def _request(self, frame: str) -> bytes | str:
        """The core's request for an EVENT frame on ``/`` (``42...``), or why not (str)."""
        try:
            packet = decode_socket(frame[1:])
        except PacketError as exc:
            return str(exc)
        if packet.namespace != MAIN_NAMESPACE:
            return f"not connected to namespace {packet.namespace[:64]!r}"
        request_id = self._unacked_id() if packet.ack is None else str(packet.ack)
        return self._bridge.request(packet.data, request_id)

    async def _binary(self, frame: bytes | str) -> bytes | None:
        """A binary packet's header or attachment, or any packet while attachments are due; the
        core's request once a BINARY_EVENT is complete."""
        assembly = self._assembly
        if type(frame) is not str:
            if assembly is None:
                await self._strike("binary frame without a binary packet (451-...) before it")
                return None
            try:
                complete = assembly.add(frame)  # type: ignore[arg-type]
            except OverflowError as exc:
                self._assembly = None
                self._gate.cut(CloseCode.MESSAGE_TOO_BIG, "binary packet too big")
                await self.close(CloseCode.MESSAGE_TOO_BIG, str(exc)[:120])
                raise LinkClosed(CloseCode.MESSAGE_TOO_BIG, "binary packet too big") from exc
            if not complete:
                return None
            self._assembly = None
            if assembly.discard:
                return None
            packet = assembly.packet
            request_id = str(packet.ack) if packet.ack is not None else self._unacked_id()
            request = self._bridge.request(assembly.data(), request_id)
            if type(request) is str:
                await self._strike(request)
                return None
            return request  # type: ignore[return-value]
        if assembly is not None:
            if not frame.startswith("4"):  # Engine.IO's own packets (pong, close) may come between
                await self._other(frame)
                return None
            self._assembly = None
            await self._strike(f"a Socket.IO packet while {assembly.missing} binary attachment(s) are due")
            if frame.startswith("42"):
                return await self._event(frame)
            if not frame.startswith(("45", "46")):
                await self._other(frame)
                return None
        await self._header(frame)
        return None

    async def _header(self, frame: str) -> None:
        """A BINARY_EVENT or BINARY_ACK header: wait for its attachments (or drop them, refused)."""
        try:
            packet = decode_socket(frame[1:])
        except PacketError as exc:
            await self._strike(str(exc))
            return
        limit = self._gate.settings.max_payload_bytes
        self._assembly = Assembly(packet, len(frame), limit, discard=True)
        if packet.type is SocketType.BINARY_ACK:
            problem = "unexpected Socket.IO packet type BINARY_ACK"
        elif packet.namespace != MAIN_NAMESPACE:
            problem = f"not connected to namespace {packet.namespace[:64]!r}"
        else:
            try:
                check_placeholders(packet.data, packet.attachments)
            except AttachmentError as exc:
                problem = str(exc)
            else:
                self._assembly = Assembly(packet, len(frame), limit)
                return
        await self._strike(problem)

    def _unacked_id(self) -> str:
        self._next_id += 1
        return f"n{self._next_id}"

    async def _send_parts(self, packet: Multipart) -> None:
        """A binary packet's header and attachments, with no other packet of ours in between."""
        while self._writing is not None:
            await asyncio.shield(self._writing)
        self._writing = done = asyncio.get_running_loop().create_future()
        try:
            await self._link.send(packet.header, text=True)
            for attachment in packet.attachments:
                await self._link.send(attachment, text=False)
        finally:
            self._writing = None
            done.set_result(None)

    async def _say(self, packet: bytes) -> None:
        """A packet of the link's own (an error event, a CONNECT answer), after any binary packet
        being written (the core's packets come one at a time from the server's writer)."""
        while self._writing is not None:
            await asyncio.shield(self._writing)
        await self._link.send(packet, text=True)

    async def _other(self, frame: bytes | str) -> None:
        if type(frame) is not str:
            await self._strike("binary frame without a binary packet (451-...) before it")
            return
        if frame == "3":
            if self._awaiting_pong:
                self._awaiting_pong = False
                if self._timer is not None:
                    self._timer.cancel()
                interval = self._gate.settings.socketio_ping_interval_s
                self._timer = asyncio.get_running_loop().call_later(interval, self._tick)
                return
            await self._strike("pong without a ping")
            return
        if frame == "1":  # Engine.IO CLOSE: the transport is closed (Socket.IO's DISCONNECT says leaving)
            await self._shut(CloseCode.NORMAL, "client closed")
            raise LinkClosed(CloseCode.NORMAL, "client closed")
        if not self._within_budget():
            await self._strike("too many packets that are not requests")
            return
        if not frame.startswith("4"):
            await self._strike(f"unexpected Engine.IO packet {frame[:8]!r}")
            return
        try:
            packet = decode_socket(frame[1:])
        except PacketError as exc:
            await self._strike(str(exc))
            return
        if packet.type is SocketType.DISCONNECT and packet.namespace == MAIN_NAMESPACE:
            await self.close(CloseCode.NORMAL, "client disconnected")
            raise LinkClosed(CloseCode.NORMAL, "client disconnected")
        if packet.type is SocketType.CONNECT:
            if packet.namespace == MAIN_NAMESPACE:  # again: already connected, same sid (and pid)
                await self._say(connect_answer(self.sid, self.pid))
            else:
                message = f"unknown namespace {packet.namespace[:64]!r}: this server serves '/'"
                await self._say(encode_connect_error(packet.namespace, message))
            return
        if packet.type is SocketType.EVENT:  # on another namespace
            await self._strike(f"not connected to namespace {packet.namespace[:64]!r}")
            return
        await self._strike(f"unexpected Socket.IO packet type {packet.type.name}")

    def _within_budget(self) -> bool:
        """Packets that are not requests spend the connection's rate budget too."""
        s = self._gate.settings
        now = asyncio.get_running_loop().time()
        bucket = self._control
        if bucket is None:
            bucket = self._control = TokenBucket(s.rate_per_s, s.rate_burst, now)
        return bucket.take(now) == 0.0

    async def _strike(self, message: str) -> None:
        """Tell the client what was wrong; close with 4400 after ``bad_frames_before_close``."""
        await self._say(encode_event("error", {"code": "bad_frame", "message": message}))
        strikes = self._strikes
        if strikes is None:
            strikes = self._strikes = StrikeCounter(self._gate.settings.bad_frames_before_close)
        if strikes.strike():
            self._gate.cut(CloseCode.PROTOCOL_VIOLATION, "too many bad packets")
            await self.close(CloseCode.PROTOCOL_VIOLATION, "too many bad packets")
            raise LinkClosed(CloseCode.PROTOCOL_VIOLATION, "too many bad packets")

    # -- heartbeat --------------------------------------------------------------------------

    def _tick(self) -> None:
        """Engine.IO heartbeat timer: ping, or close when the last ping went unanswered."""
        self._timer = None
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        settings = self._gate.settings
        if self._awaiting_pong:  # the transport is gone: the session stays recoverable
            self._gate.cut(CloseCode.INTERNAL_ERROR, "Engine.IO ping timeout")
            self._ended()
            self._spawn(self._shut(CloseCode.INTERNAL_ERROR, "ping timeout"))
            return
        self._awaiting_pong = True
        self._ping()
        self._timer = loop.call_later(settings.socketio_ping_timeout_s, self._tick)

    def _ping(self) -> None:
        self._spawn(self._link.send(PING, text=True))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a write the timer cannot await (a ping or a close); the task is referenced only
        while it runs, so an idle connection does not keep a finished one."""

        async def quietly() -> None:
            with contextlib.suppress(LinkClosed):
                await work

        task = asyncio.get_running_loop().create_task(quietly())
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    def _stop_timer(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- connection state recovery (recovery.py) --------------------------------------------

    def attach(self, conn: Connection) -> None:
        """The server's connection over this link (``server.py`` calls this): its session and
        queue are what a recovery record is made of."""
        self._conn = conn

    def _wrote(self, offset: str) -> None:
        """A message with ``offset`` goes to the client (written, or being written)."""
        (self._ring or self._new_ring()).append(offset)

    def _new_ring(self) -> deque[str | None]:
        ring = self._ring = deque((self._start,), RING_SIZE)
        return ring

    def _ended(self) -> None:
        """The link is over: unless the client left or the server closed it, keep a record."""
        recovery, pid = self._gate.recovery, self.pid
        if recovery is None or pid is None:
            return
        if recovery.live.get(pid) is self:
            del recovery.live[pid]
        record = self.hand_over()
        if record is not None:
            recovery.keep(pid, record)

    def hand_over(self) -> Record | None:
        """This session's record, once (None when it is not recoverable or already handed over)."""
        conn, recovery = self._conn, self._gate.recovery
        if not self._recoverable or conn is None or recovery is None:
            return None
        self._recoverable = False
        ring = tuple(self._ring) if self._ring is not None else (self._start,)
        return recovery.snapshot(conn, self.user, self.sid, ring, self._gate.settings.envelope)

    def take_over(self) -> Record | None:
        """A new connection resumes this one's pid (this transport is dead but not noticed yet):
        its record, and this link closes."""
        record = self.hand_over()
        self._spawn(self._shut(CloseCode.NORMAL, "session resumed by a new connection"))
        return record

    async def _next_resubscription(self) -> bytes:
        """The next resuming subscribe, within half the connection's rate budget (the client's own
        requests keep the other half)."""
        pending = cast("deque[bytes]", self._resubscribe)
        if len(pending) > max(1, self._gate.settings.rate_burst // 2):
            await asyncio.sleep(2 / self._gate.settings.rate_per_s)
        request = pending.popleft()
        if not pending:
            self._resubscribe = None
        return request


class SocketIOFrameLink(SocketIOLink):
    """:class:`SocketIOLink` over a link that writes synchronously and reads inline (picows).

    The server's fast paths then work for Socket.IO clients too: fan-out's eager writes and the
    per-iteration flush write translated packets straight into the socket (the translation of a
    broadcast is shared, see ``bridge.py``), and a request EVENT is handled inside picows' data
    callback. Anything else (pongs, bad packets) takes :meth:`SocketIOLink.recv`, in order.
    """

    __slots__ = ("_handler",)

    def __init__(self, link: Link, gate: SocketIOGate, connected: Connected, user: str | None = None) -> None:
        super().__init__(link, gate, connected, user)
        self._handler: Callable[[bytes | str], bool] | None = None

    @property
    def _frames(self) -> FrameLink:
        return cast(FrameLink, self._link)

    # -- InlineLink ---------------------------------------------------------------------------

    @property
    def inline(self) -> Callable[[bytes | str], bool] | None:
        return self._handler

    @inline.setter
    def inline(self, handler: Callable[[bytes | str], bool] | None) -> None:
        """The server hands its frame handler over; the inner link then calls :meth:`_inline`."""
        self._handler = handler
        cast(InlineLink, self._link).inline = None if handler is None else self._inline

    def _inline(self, frame: bytes | str) -> bool:
        handler = self._handler
        if handler is None or type(frame) is not str or not frame.startswith("42") or self._assembly:
            return False
        request = self._request(frame)
        if type(request) is str:
            return False  # recv() decodes it again and answers with an error event
        return handler(request)

    # -- FrameLink ----------------------------------------------------------------------------

    def ready(self) -> bool:
        return self._frames.ready()

    def write_frame(self, data: bytes, text: bool) -> bool:
        bridge = self._bridge
        packet = bridge.outbound(data)
        if packet is None:
            return True
        offset = bridge.offset
        if type(packet) is bytes:
            if not self._frames.write_frame(packet, True):
                return False
        else:
            parts = cast(Multipart, packet)
            if not self._frames.write_frame(parts.header, True):
                return False
            self._frames.write_frames(list(parts.attachments), False)  # at once: no readiness check
        if offset is not None:
            (self._ring or self._new_ring()).append(offset)
        return True

    def write_frames(self, batch: list[bytes], text: bool) -> None:
        packets = self._packets(batch) if self._bridge.offsets else self._plain(batch)
        for packet in packets:
            if type(packet) is not bytes:  # binary packets among them: text and binary runs
                for run, run_text in _runs(packets):
                    self._frames.write_frames(run, run_text)
                return
        if packets:
            self._frames.write_frames(packets, True)  # type: ignore[arg-type]

    async def send(self, data: bytes, *, text: bool) -> None:
        bridge = self._bridge
        packet = bridge.outbound(data)
        if packet is None:
            return
        if bridge.offset is not None:
            self._wrote(bridge.offset)
        if type(packet) is bytes:
            await self._link.send(packet, text=True)
        else:  # once the socket is writable, every frame in one go
            await self.send_batch_packets([packet])

    def _plain(self, batch: list[bytes]) -> list[bytes | Multipart]:
        return [packet for packet in map(self._bridge.outbound, batch) if packet is not None]

    def _packets(self, batch: list[bytes]) -> list[bytes | Multipart]:
        """The packets of ``batch``; the offsets they carry are recorded as written. Inline, not
        :meth:`_wrote`: this is every delivery's path (the fan-out flush)."""
        bridge = self._bridge
        outbound = bridge.outbound
        record = (self._ring or self._new_ring()).append
        packets: list[bytes | Multipart] = []
        for data in batch:
            packet = outbound(data)
            if packet is not None:
                packets.append(packet)
                offset = bridge.offset
                if offset is not None:
                    record(offset)
        return packets

    def _ping(self) -> None:
        """Written at once when the socket takes it: no task for most pings."""
        if not cast(Any, self._link).write_now(PING, True):  # the packet as it is: no translation
            super()._ping()

    def write_now(self, data: bytes, text: bool) -> bool:
        bridge = self._bridge
        packet = bridge.outbound(data)
        if packet is None:
            return True
        offset = bridge.offset
        if type(packet) is bytes:
            if not cast(Any, self._link).write_now(packet, True):
                return False
        else:
            parts = cast(Multipart, packet)
            if not cast(Any, self._link).write_now(parts.header, True):
                return False
            self._frames.write_frames(list(parts.attachments), False)
        if offset is not None:
            (self._ring or self._new_ring()).append(offset)
        return True

    async def send_batch(self, batch: list[bytes], *, text: bool) -> None:
        packets = self._packets(batch) if self._bridge.offsets else self._plain(batch)
        if packets:
            await self.send_batch_packets(packets)

    async def send_batch_packets(self, packets: list[bytes | Multipart]) -> None:
        """Translated packets, in order; binary ones as text and binary runs, all written in one
        go once the socket is writable (the inner ``send_batch`` returns right after its write)."""
        for packet in packets:
            if type(packet) is not bytes:
                break
        else:
            await cast(Any, self._link).send_batch(packets, text=True)
            return
        runs = _runs(packets)
        first, first_text = runs[0]
        await cast(Any, self._link).send_batch(first, text=first_text)
        for run, run_text in runs[1:]:
            self._frames.write_frames(run, run_text)


class SocketIOUpgradeLink(SocketIOFrameLink):
    """:class:`SocketIOLink` of a long-polling session (``polling.py``), which may move to a
    WebSocket: plain until then, and after the move over a picows WebSocket the same fast paths as
    :class:`SocketIOFrameLink` (the server's connection reads them again, see ``fast_paths``).

    The server hands its inline handler over at the start; it reaches the WebSocket with the move.
    """

    __slots__ = ("_fast",)

    def __init__(self, link: Link, gate: SocketIOGate, connected: Connected, user: str | None = None) -> None:
        super().__init__(link, gate, connected, user)
        self._fast = False
        cast(Any, link).on_switch = self.rebind

    @property
    def fast_paths(self) -> bool:
        """The :class:`SocketIOFrameLink` methods are usable (``server.Connection.refresh``)."""
        return self._fast

    @property
    def inline(self) -> Callable[[bytes | str], bool] | None:
        return self._handler

    @inline.setter
    def inline(self, handler: Callable[[bytes | str], bool] | None) -> None:
        self._handler = handler
        if self._fast:
            cast(InlineLink, self._link).inline = None if handler is None else self._inline

    def rebind(self, link: Link) -> None:
        """Over a picows WebSocket: the fast paths are on, the connection told, the inline handler
        moved; over any other, plain reads and writes on it."""
        self._link = link
        self._fast = hasattr(link, "write_frames")
        if self._conn is not None:
            self._conn.refresh()
        if self._fast and self._handler is not None:
            cast(InlineLink, link).inline = self._inline

    async def send(self, data: bytes, *, text: bool) -> None:
        if self._fast:
            await SocketIOFrameLink.send(self, data, text=text)
        else:
            await SocketIOLink.send(self, data, text=text)

    def _ping(self) -> None:
        if self._fast:
            SocketIOFrameLink._ping(self)
        else:
            SocketIOLink._ping(self)


def _runs(packets: list[bytes | Multipart]) -> list[tuple[list[bytes], bool]]:
    """Translated packets as runs of frames of one kind: (frames, text), in order."""
    runs: list[tuple[list[bytes], bool]] = []
    text_run: list[bytes] = []
    for packet in packets:
        if isinstance(packet, bytes):
            text_run.append(packet)
            continue
        text_run.append(packet.header)
        runs.append((text_run, True))
        runs.append((list(packet.attachments), False))
        text_run = []
    if text_run:
        runs.append((text_run, True))
    return runs
