"""RabbitMQ broker: a stream keeps the ordered history, a single-active-consumer queue sequences.

RabbitMQ has no per-key compare-and-set (Redis scripts, JetStream's expected-last-sequence), so
gapless per-channel ``seq`` needs one writer. Why this shape:

* **One stream is the log.** Every sequenced message of every channel is appended to one
  RabbitMQ stream (``x-queue-type: stream``, read over AMQP 0.9.1 with ``x-stream-offset``):
  durable, replicated like a quorum queue, and replayable from any offset. Retention is by size
  (``stream_max_bytes``), so the log is bounded however many channels there are; one stream
  instead of one per channel keeps the broker's queue count constant.
* **A single-active-consumer queue is the sequencer.** A publish is a request on that queue
  (classic and in memory: a request lives for seconds, carries its caller's deadline, and a lost
  one is retried by its caller with the same ``msg_id``). RabbitMQ hands its messages to exactly one consuming instance at a time (the others
  wait as standbys); that instance assigns the next ``seq`` of the channel, drops a ``msg_id``
  seen inside the idempotency window, appends to the stream with publisher confirms and only
  then replies and acknowledges the request. A request whose answer never came is redelivered
  to the next sequencer, which recognises it by its request id if it was already appended.
* **Batched.** Requests of one event-loop turn travel as one message, the sequencer answers each
  instance with one message per batch and appends a batch as one stream entry (one write, one
  confirm, one delivery per reader); the active sequencer's own instance skips the round trip.
* **Takeover rebuilds from the log.** A new sequencer appends a marker to the stream and waits
  until its own reader has seen it: everything sequenced before is then in its state (last
  ``seq`` and epoch per channel, the idempotency window). A channel the log no longer holds (all
  its messages fell out of retention) starts again at ``seq`` 1 under a new epoch, so
  subscribers resync instead of taking the new numbers for duplicates.
* **Every instance reads the whole log.** It fans messages of its subscribed channels out to
  ``on_message`` (through :class:`~.ordering.SequenceGate`, which drops what a reconnect replays)
  and keeps each channel's last ``history_size`` messages in memory for :meth:`history` and
  resume. A reconnect resumes the reader at the next offset: nothing is missed while down.
* **Presence and notices are the sequencer's too.** Join, leave and who-is-here are requests on
  the same queue, so "first / last connection of this user" is decided in one place. Every
  instance re-sends its members every third of ``presence_ttl_s``; the sequencer drops an
  instance that stopped doing so and announces ``leave`` for its users. Unsequenced notices
  (:meth:`announce`) go through a fanout exchange to every instance.

Costs: a publish takes two hops (request, stream append, reply); every instance holds the history
replica of every channel; a sequencer failover takes the marker round trip plus ``settle_s``.
Every backend error is raised as :class:`BrokerUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import orjson

from .base import (
    BrokerUnavailable,
    ChannelOptions,
    History,
    Message,
    OnMessage,
    PresenceMember,
    PublishResult,
)
from .options import DURABLE_DEFAULT_HISTORY, kept_messages, split_url_options
from .ordering import SequenceGate

log = logging.getLogger(__name__)

T = TypeVar("T")

_BACKEND_ERRORS = (
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)
_BATCH = 256
"""Requests the sequencer takes at once: their stream appends are pipelined, one confirm wait."""


_Request = aio_pika.abc.AbstractIncomingMessage | list[dict[str, Any]]
"""What the sequencer takes: a delivery from its queue (a list of requests from some instance), or
this instance's own requests while it is the active sequencer (no round trip through RabbitMQ)."""


@dataclass(frozen=True, slots=True)
class _Seen:
    """What an idempotency key was answered with: the stored message's position."""

    seq: int
    ts: int
    epoch: str
    expires: float


class _Window:
    """Keys (``msg_id`` per channel, request ids) seen in the last ``span_s`` seconds; oldest first."""

    def __init__(self, span_s: float) -> None:
        self._span_s = span_s
        self._entries: OrderedDict[str, _Seen] = OrderedDict()

    def add(self, key: str, seq: int, ts: int, epoch: str) -> None:
        self._entries[key] = _Seen(seq, ts, epoch, ts / 1000 + self._span_s)
        self._entries.move_to_end(key)

    def get(self, key: str, now: float) -> _Seen | None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.expires > now:
                break
            self._entries.popitem(last=False)
        return self._entries.get(key)


@dataclass(slots=True)
class _Replica:
    """One channel as this instance's log reader knows it."""

    epoch: str
    last: int = 0
    kept: deque[Message] = field(default_factory=deque)


@dataclass(slots=True)
class _Members:
    """The sequencer's presence table (only the active sequencer's is meaningful)."""

    channels: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    """channel -> user -> ``instance/conn`` keys."""
    beats: dict[str, float] = field(default_factory=dict)
    """instance -> monotonic time of its last request."""

    def join(self, channel: str, user: str, key: str) -> bool:
        conns = self.channels.setdefault(channel, {}).setdefault(user, set())
        first = not conns
        conns.add(key)
        return first

    def leave(self, channel: str, user: str, key: str) -> bool:
        users = self.channels.get(channel, {})
        conns = users.get(user)
        if conns is None or key not in conns:
            return False
        conns.discard(key)
        if conns:
            return False
        del users[user]
        if not users:
            del self.channels[channel]
        return True

    def replace(self, instance: str, members: list[list[str]]) -> None:
        """Make ``instance``'s entries exactly ``members`` (``[channel, user, conn]`` each), silently.

        The instance's last beat stays: it is what expires these entries if the instance dies.
        """
        self._remove(instance)
        for channel, user, conn in members:
            self.join(channel, user, f"{instance}/{conn}")

    def drop(self, instance: str) -> list[tuple[str, str]]:
        """Forget ``instance``: its entries and its beat; the ``(channel, user)`` pairs left without one."""
        self.beats.pop(instance, None)
        return self._remove(instance)

    def _remove(self, instance: str) -> list[tuple[str, str]]:
        gone: list[tuple[str, str]] = []
        prefix = f"{instance}/"
        for channel, users in list(self.channels.items()):
            for user, conns in list(users.items()):
                for key in [k for k in conns if k.startswith(prefix)]:
                    if self.leave(channel, user, key):
                        gone.append((channel, user))
        return gone


class RabbitMQBroker:
    """:class:`~.base.Broker` over RabbitMQ (3.9+, streams over AMQP 0.9.1) with aio-pika.

    Args:
        url: ``amqp://user:password@host:port/vhost``. ``prefix``, ``presence_ttl_s`` and
            ``op_timeout_s`` may also be given as URL query parameters; those win.
        prefix: name stem of the stream, the sequencer queue and the exchange, so several
            projects share a vhost.
        idempotency_window_s: how long a ``msg_id`` is remembered per channel; 0 disables.
        presence_ttl_s: how long an instance's members survive without a refresh from it.
        max_history: the most messages kept per channel in each instance's replica.
        stream_max_bytes: retention of the log stream (RabbitMQ drops whole old segments).
        settle_s: how long a new sequencer lets instances re-send their members before it
            answers presence (it has no presence table until then).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "wsforge",
        idempotency_window_s: float = 120,
        presence_ttl_s: float = 30.0,
        op_timeout_s: float = 2.0,
        max_history: int = DURABLE_DEFAULT_HISTORY,
        stream_max_bytes: int = 1_000_000_000,
        settle_s: float = 0.2,
        instance_id: str | None = None,
    ) -> None:
        url, from_url = split_url_options(url)
        self._url = url.rstrip("?")
        self._prefix = from_url.get("prefix", prefix)
        self._presence_ttl_s = float(from_url.get("presence_ttl_s", presence_ttl_s))
        self._op_timeout_s = float(from_url.get("op_timeout_s", op_timeout_s))
        self._idempotency_window_s = idempotency_window_s
        self._max_history = max_history
        self._stream_max_bytes = stream_max_bytes
        self._settle_s = settle_s
        self._instance = instance_id or uuid.uuid4().hex[:12]
        self._log_name = f"{self._prefix}.log"
        self._seq_name = f"{self._prefix}.sequencer"
        self._notice_name = f"{self._prefix}.notice"
        self._inbox_name = f"{self._prefix}.instance.{self._instance}"
        self._on_message: OnMessage | None = None
        self._gate = SequenceGate()
        # the log reader's view (every instance)
        self._replicas: dict[str, _Replica] = {}
        self._seen = _Window(max(idempotency_window_s, self._op_timeout_s * 4))
        self._offset: int | None = None
        self._progress = asyncio.Event()
        self._marks: dict[str, asyncio.Future[None]] = {}
        # the sequencer's state (meaningful while this instance is the active consumer)
        self._synced = False
        self._assigned: dict[str, tuple[str, int]] = {}
        self._members = _Members()
        self._requests: asyncio.Queue[_Request] = asyncio.Queue()
        # this instance as a client of the sequencer
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._outbox: list[dict[str, Any]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._unacked = 0
        self._local_members: dict[str, dict[str, str]] = {}
        self._anchoring: dict[str, list[Message]] = {}
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._out: aio_pika.abc.AbstractChannel | None = None
        self._appender: aio_pika.abc.AbstractChannel | None = None
        self._notice: aio_pika.abc.AbstractExchange | None = None
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._ready.is_set() and not self._lost.is_set() and not self._closed

    @property
    def instance_id(self) -> str:
        return self._instance

    async def ping(self) -> None:
        """One round trip (a passive declare of the sequencer queue) within the operation deadline."""
        out = self._require_out()
        try:
            async with asyncio.timeout(self._op_timeout_s):
                await out.get_queue(self._seq_name, ensure=True)
        except _BACKEND_ERRORS as exc:
            raise BrokerUnavailable(f"rabbitmq health check: {exc!r}") from exc

    async def start(self, on_message: OnMessage) -> None:
        """Connect; raises :class:`BrokerUnavailable` if RabbitMQ is unreachable, but keeps trying."""
        self._on_message = on_message
        self._tasks.append(asyncio.create_task(self._connect_forever(), name="rabbitmq-broker"))
        self._tasks.append(asyncio.create_task(self._beat_forever(), name="rabbitmq-presence"))
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=self._op_timeout_s * 2)
        except TimeoutError as exc:
            raise BrokerUnavailable(f"rabbitmq not reachable at {self._redacted_url()}") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        if self.healthy:
            with contextlib.suppress(*_BACKEND_ERRORS, BrokerUnavailable):
                await self._tell("bye", {"i": self._instance})
        self._closed = True
        self._lost.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._ready.clear()

    async def _connect_forever(self) -> None:
        """Hold one connection; after a loss, reconnect with backoff and resume the log reader."""
        delay = 0.05
        while not self._closed:
            self._lost.clear()
            connection: aio_pika.abc.AbstractConnection | None = None
            session: list[asyncio.Task[None]] = []
            try:
                connection = await aio_pika.connect(self._url, timeout=self._op_timeout_s * 2)
                connection.close_callbacks.add(self._on_closed)
                self._connection = connection
                session = await self._open(connection)
                if self._offset is not None and not await self._resumed():
                    continue
                delay = 0.05
                self._ready.set()
                log.info("rabbitmq broker ready (instance %s)", self._instance)
                await self._lost.wait()
            except asyncio.CancelledError:
                raise
            except _BACKEND_ERRORS as exc:
                log.debug("rabbitmq connect failed: %s", exc)
            finally:
                self._ready.clear()
                self._synced = False
                for task in session:
                    task.cancel()
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(BrokerUnavailable("rabbitmq connection lost"))
                self._pending.clear()
                self._outbox.clear()
                self._out = self._appender = self._notice = self._connection = None
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), timeout=self._op_timeout_s)
            if not self._closed:
                log.warning("rabbitmq broker disconnected; reconnecting")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _resumed(self) -> bool:
        """After a reconnect, check that the reader resumes the same log: append a marker and see
        it come back. A reader resumed at an offset past the end of the log (the stream was
        deleted and created again: it starts from offset 0) waits for it in vain; then forget what
        this instance knew of the old log and read the new one from its start."""
        try:
            await self._mark(timeout=max(2.0, self._op_timeout_s * 2))
            return True
        except (*_BACKEND_ERRORS, BrokerUnavailable):
            if self._lost.is_set():
                return False
        log.warning("rabbitmq log %s was recreated; its history is lost", self._log_name)
        self._offset = None
        self._replicas.clear()
        self._seen = _Window(max(self._idempotency_window_s, self._op_timeout_s * 4))
        return False

    async def _mark(self, timeout: float) -> None:
        """Append a marker to the log and wait until this instance's reader has read it."""
        mark = uuid.uuid4().hex
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks[mark] = future
        try:
            await self._require_appender().default_exchange.publish(
                aio_pika.Message(orjson.dumps({"x": mark})), routing_key=self._log_name
            )
            await asyncio.wait_for(future, timeout=timeout)
        finally:
            self._marks.pop(mark, None)

    def _on_closed(self, *_args: Any) -> None:
        self._lost.set()

    async def _open(self, connection: aio_pika.abc.AbstractConnection) -> list[asyncio.Task[None]]:
        """Declare the topology and start the three consumers: inbox, log reader, sequencer."""
        out = await connection.channel(publisher_confirms=False)
        reader = await connection.channel()
        # The sequencer appends on the channel it consumes requests on: if RabbitMQ closes it and
        # hands the queue to another instance, this one's appends cannot land after the switch.
        sequencer = appender = await connection.channel(publisher_confirms=True)
        for channel in (out, reader, sequencer):
            channel.close_callbacks.add(self._on_closed)
            # The broker cancels a consumer whose queue was deleted; start over and declare again.
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(self._on_closed)
        stream_args: dict[str, Any] = {"x-queue-type": "stream", "x-max-length-bytes": self._stream_max_bytes}
        await out.declare_queue(self._log_name, durable=True, arguments=stream_args)
        # Requests live for seconds (each carries its caller's deadline) and a lost one is retried by
        # its caller (same msg_id): an in-memory classic queue, no Raft log and fsync per request.
        queue_args: dict[str, Any] = {"x-queue-type": "classic", "x-single-active-consumer": True}
        await out.declare_queue(self._seq_name, durable=False, arguments=queue_args)
        self._notice = await out.declare_exchange(self._notice_name, aio_pika.ExchangeType.FANOUT, durable=True)
        inbox = await out.declare_queue(self._inbox_name, exclusive=True, auto_delete=True)
        await inbox.bind(self._notice)
        self._out, self._appender = out, appender
        await inbox.consume(self._on_inbox, no_ack=True)
        # A stream consumer needs a prefetch and manual acks; resume after the last offset read.
        await reader.set_qos(prefetch_count=1000)
        self._unacked = 0
        stream = await reader.declare_queue(self._log_name, durable=True, arguments=stream_args)
        start: int | str = "first" if self._offset is None else self._offset + 1
        await stream.consume(self._on_log, arguments={"x-stream-offset": start})
        self._requests = asyncio.Queue()
        await sequencer.set_qos(prefetch_count=_BATCH)
        requests = await sequencer.declare_queue(self._seq_name, durable=False, arguments=queue_args)
        await requests.consume(self._on_request)
        return [asyncio.create_task(self._sequence_forever(self._requests), name="rabbitmq-sequencer")]

    # -- interest ----------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Gate the channel from the sequencer's current position: the log reader may still be
        behind, and what was published before the subscription must not be delivered as new."""
        if self._gate.is_tracked(channel):
            return
        self._gate.track(channel)
        # What the reader reads meanwhile waits here until the position is known (else a message
        # older than the subscription would be delivered, and would set the gate's position).
        held = self._anchoring[channel] = []
        try:
            if self.healthy:
                with contextlib.suppress(BrokerUnavailable):
                    reply = await self._call(lambda: self._ask("last", {"c": channel}))
                    self._gate.anchor(channel, reply["e"], reply["q"])
        finally:
            del self._anchoring[channel]
            for message in held:
                self._deliver(self._gate.offer(message, message.epoch))

    async def unsubscribe(self, channel: str) -> None:
        self._gate.forget(channel)

    # -- messages ----------------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        payload: Any,
        options: ChannelOptions,
        *,
        sender: str | None = None,
        msg_id: str | None = None,
    ) -> PublishResult:
        request = {
            "c": channel,
            "p": payload,
            "s": sender,
            "m": msg_id,
            "k": min(kept_messages(options), self._max_history),
        }
        reply = await self._call(lambda: self._ask("pub", request))
        message = Message(channel, reply["q"], reply["t"], payload, sender, msg_id, reply["e"])
        return PublishResult(message, duplicate=bool(reply.get("dup")))

    async def announce(self, channel: str, payload: Any) -> None:
        body = orjson.dumps({"c": channel, "t": int(time.time() * 1000), "p": payload})
        await self._call(lambda: self._require_notice().publish(aio_pika.Message(body), routing_key=""))

    async def history(
        self, channel: str, since_seq: int, options: ChannelOptions, *, limit: int = 1000
    ) -> History:
        reply = await self._call(lambda: self._ask("last", {"c": channel}))
        epoch, last = str(reply["e"]), int(reply["q"])
        await self._call(lambda: self._caught_up(channel, epoch, last))
        # A subscribing server answers its client with this position: the gate must hold it too.
        self._gate.anchor(channel, epoch, last)
        keep = min(kept_messages(options), self._max_history)
        if since_seq == last:
            return History(messages=[], epoch=epoch, last_seq=last, recovered=True)
        if since_seq > last or keep == 0 or limit <= 0:
            return History(messages=[], epoch=epoch, last_seq=last, recovered=False)
        cutoff = int(time.time() * 1000) - options.history_ttl_s * 1000 if options.history_ttl_s else 0
        replica = self._replicas.get(channel)
        kept = [] if replica is None else list(replica.kept)
        messages = [m for m in kept[-keep:] if since_seq < m.seq <= last and m.ts >= cutoff][:limit]
        recovered = bool(messages) and messages[0].seq == since_seq + 1
        return History(messages=messages, epoch=epoch, last_seq=last, recovered=recovered)

    async def _caught_up(self, channel: str, epoch: str, last: int) -> None:
        """Wait until this instance's log reader has read ``channel`` up to ``last``."""
        while last:
            replica = self._replicas.get(channel)
            if replica is not None and replica.epoch == epoch and replica.last >= last:
                return
            progress = self._progress
            await progress.wait()

    # -- presence ----------------------------------------------------------------------------

    async def presence_join(self, channel: str, user: str, conn_id: str) -> bool:
        self._local_members.setdefault(channel, {})[conn_id] = user
        reply = await self._call(lambda: self._ask("join", self._member(channel, user, conn_id)))
        return bool(reply["ok"])

    async def presence_leave(self, channel: str, user: str, conn_id: str) -> bool:
        members = self._local_members.get(channel)
        if members is not None:
            members.pop(conn_id, None)
            if not members:
                del self._local_members[channel]
        reply = await self._call(lambda: self._ask("leave", self._member(channel, user, conn_id)))
        return bool(reply["ok"])

    async def presence_members(self, channel: str) -> list[PresenceMember]:
        reply = await self._call(lambda: self._ask("members", {"c": channel}))
        return [PresenceMember(user, n) for user, n in reply["ok"]]

    def _member(self, channel: str, user: str, conn_id: str) -> dict[str, Any]:
        return {"c": channel, "u": user, "i": self._instance, "n": conn_id}

    async def _beat_forever(self) -> None:
        """Re-send this instance's members every third of the TTL, so the sequencer keeps them."""
        while not self._closed:
            await asyncio.sleep(self._presence_ttl_s / 3)
            await self._beat()

    async def _beat(self) -> None:
        if not self.healthy:
            return
        members = [[c, u, n] for c, conns in self._local_members.items() for n, u in conns.items()]
        with contextlib.suppress(*_BACKEND_ERRORS, BrokerUnavailable):
            await self._tell("beat", {"i": self._instance, "members": members})

    # -- the client side of the sequencer -----------------------------------------------------

    async def _ask(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a request to the sequencer and wait for its reply (bounded by :meth:`_call`)."""
        rid = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self._tell(op, {**body, "r": rid})
            return await future
        finally:
            self._pending.pop(rid, None)

    async def _tell(self, op: str, body: dict[str, Any]) -> None:
        """Queue a request; the requests of one event-loop turn travel as one AMQP message."""
        self._require_out()
        # The deadline travels with the request: a sequencer that gets it late (a takeover after
        # the caller gave up) drops it, so a publish reported as failed is not delivered after all.
        deadline = int((time.time() + self._op_timeout_s * 2) * 1000)
        if self._synced:
            # This instance is the active sequencer: its own requests skip the round trip.
            self._requests.put_nowait([{**body, "o": op, "d": deadline}])
            return
        self._outbox.append({**body, "o": op, "d": deadline})
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the other requests of this turn join
        while self._outbox:
            batch, self._outbox = self._outbox[:_BATCH], self._outbox[_BATCH:]
            message = aio_pika.Message(
                orjson.dumps(batch), reply_to=self._inbox_name, expiration=self._op_timeout_s * 2
            )
            await self._require_out().default_exchange.publish(message, routing_key=self._seq_name)

    async def _on_inbox(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        """Replies to this instance's requests, and notices from the fanout exchange."""
        data = orjson.loads(message.body)
        if message.type == "replies":
            for rid, answer in data:
                future = self._pending.get(rid)
                if future is not None and not future.done():
                    future.set_result(answer)
            return
        if data.get("sync"):
            asyncio.get_running_loop().create_task(self._beat())
            return
        channel = data["c"]
        if self._gate.is_tracked(channel):
            self._deliver([Message(channel, 0, data["t"], data["p"])])

    # -- the log reader ------------------------------------------------------------------------

    async def _on_log(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        offset = (message.headers or {}).get("x-stream-offset")
        if isinstance(offset, int):
            self._offset = offset
        data = orjson.loads(message.body)
        mark = data.get("x")
        if mark is not None:
            future = self._marks.get(mark)
            if future is not None and not future.done():
                future.set_result(None)
        else:
            for record in data["b"]:
                self._apply(record)
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()
        # A stream consumer's acks only return credit: one for every hundred deliveries (the
        # prefetch is ten times that) saves a frame per message.
        self._unacked += 1
        if self._unacked >= 100:
            self._unacked = 0
            with contextlib.suppress(*_BACKEND_ERRORS):
                await message.ack(multiple=True)

    def _apply(self, data: dict[str, Any]) -> None:
        channel, seq, epoch = data["c"], data["q"], data["e"]
        replica = self._replicas.get(channel)
        if replica is None or replica.epoch != epoch:
            replica = self._replicas[channel] = _Replica(epoch)
        if seq <= replica.last:
            return  # read again after a reconnect
        replica.last = seq
        message = Message(channel, seq, data["t"], data["p"], data["s"], data["m"], epoch)
        keep = data["k"]
        if keep > 0:
            if replica.kept.maxlen != keep:
                replica.kept = deque(replica.kept, maxlen=keep)
            replica.kept.append(message)
        if data["m"] is not None and self._idempotency_window_s:
            self._seen.add(f"m/{channel}/{data['m']}", seq, data["t"], epoch)
        self._seen.add(f"r/{data['r']}", seq, data["t"], epoch)
        held = self._anchoring.get(channel)
        if held is not None:
            held.append(message)
        elif self._gate.is_tracked(channel):
            self._deliver(self._gate.offer(message, epoch))

    def _deliver(self, messages: list[Message]) -> None:
        if self._on_message is None:
            return
        for message in messages:
            try:
                self._on_message(message)
            except Exception:
                log.exception("on_message failed for %s seq %s", message.channel, message.seq)

    # -- the sequencer -------------------------------------------------------------------------

    async def _on_request(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self._requests.put_nowait(message)

    async def _sequence_forever(self, requests: asyncio.Queue[_Request]) -> None:
        """Take requests in batches, in queue order, while this instance is the active consumer."""
        while True:
            try:
                first = await asyncio.wait_for(requests.get(), timeout=self._presence_ttl_s / 3)
            except TimeoutError:
                if self._synced:
                    await self._expire_members()
                continue
            batch = [first]
            while len(batch) < _BATCH and not requests.empty():
                batch.append(requests.get_nowait())
            try:
                if not self._synced:
                    await self._take_over()
                await self._answer(batch)
            except (*_BACKEND_ERRORS, BrokerUnavailable) as exc:
                # State may now be ahead of the log: rebuild it before the next request.
                log.warning("rabbitmq sequencer batch failed: %s", exc)
                self._synced = False
                for item in batch:
                    if isinstance(item, list):
                        self._fail_local(item, exc)
                deliveries = [item for item in batch if not isinstance(item, list)]
                if deliveries:
                    with contextlib.suppress(Exception):  # the channel may be gone: then they come back anyway
                        await deliveries[-1].nack(multiple=True, requeue=True)

    async def _take_over(self) -> None:
        """Become the sequencer: read the log up to a fresh marker, then ask for members."""
        await self._mark(timeout=max(30.0, self._op_timeout_s * 10))  # may read the whole log first
        self._assigned = {c: (r.epoch, r.last) for c, r in self._replicas.items()}
        self._members = _Members()
        await self._require_notice().publish(aio_pika.Message(orjson.dumps({"sync": 1})), routing_key="")
        await asyncio.sleep(self._settle_s)
        self._synced = True
        log.info("rabbitmq sequencer active on instance %s", self._instance)

    def _fail_local(self, requests: list[dict[str, Any]], exc: BaseException) -> None:
        for data in requests:
            future = self._pending.get(data.get("r", ""))
            if future is not None and not future.done():
                future.set_exception(BrokerUnavailable(f"rabbitmq: {exc!r}"))

    async def _answer(self, batch: list[_Request]) -> None:
        now = time.time()
        now_ms = int(now * 1000)
        appends: list[dict[str, Any]] = []
        replies: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        local: list[tuple[str, dict[str, Any]]] = []
        fresh: dict[str, _Seen] = {}
        for request in batch:
            own = isinstance(request, list)
            for data in request if isinstance(request, list) else orjson.loads(request.body):
                if data["d"] < now_ms:
                    continue  # its caller has given up and reported the broker unavailable
                answer = self._decide(data, now, now_ms, appends, fresh)
                if answer is None or "r" not in data:
                    continue
                if own:
                    local.append((data["r"], answer))
                elif not isinstance(request, list) and request.reply_to:
                    replies.setdefault(request.reply_to, []).append((data["r"], answer))
        # One stream entry per _BATCH records: one write, one confirm, one delivery per reader.
        # Confirms are awaited together; the channel sends the entries in this order.
        appender = self._require_appender()
        await asyncio.gather(
            *(
                appender.default_exchange.publish(
                    aio_pika.Message(
                        orjson.dumps({"b": appends[i : i + _BATCH]}), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    ),
                    routing_key=self._log_name,
                )
                for i in range(0, len(appends), _BATCH)
            )
        )
        for key, seen in fresh.items():
            self._seen.add(key, seen.seq, seen.ts, seen.epoch)
        out = self._require_out()
        for rid, answer in local:
            future = self._pending.get(rid)
            if future is not None and not future.done():
                future.set_result(answer)
        for reply_to, answers in replies.items():
            # Not mandatory: the asking instance may have died meanwhile (its caller retries).
            await out.default_exchange.publish(
                aio_pika.Message(orjson.dumps(answers), type="replies"), routing_key=reply_to, mandatory=False
            )
        deliveries = [item for item in batch if not isinstance(item, list)]
        if deliveries:
            await deliveries[-1].ack(multiple=True)
        await self._expire_members()

    def _decide(
        self,
        data: dict[str, Any],
        now: float,
        now_ms: int,
        appends: list[dict[str, Any]],
        fresh: dict[str, _Seen],
    ) -> dict[str, Any] | None:
        """One request's effect on the state; its reply (None: no reply expected)."""
        op = data["o"]
        instance = data.get("i")
        if instance is not None:
            self._members.beats[instance] = time.monotonic()
        if op == "pub":
            return self._sequence(data, now, now_ms, appends, fresh)
        if op == "last":
            return dict(zip(("e", "q"), self._position(data["c"]), strict=True))
        if op == "join":
            return {"ok": self._members.join(data["c"], data["u"], f"{instance}/{data['n']}")}
        if op == "leave":
            return {"ok": self._members.leave(data["c"], data["u"], f"{instance}/{data['n']}")}
        if op == "members":
            users = self._members.channels.get(data["c"], {})
            return {"ok": sorted([user, len(conns)] for user, conns in users.items())}
        if op == "beat":
            self._members.replace(data["i"], data["members"])
        elif op == "bye":
            self._members.drop(data["i"])
        return None

    def _position(self, channel: str) -> tuple[str, int]:
        position = self._assigned.get(channel)
        if position is None:
            position = self._assigned[channel] = (uuid.uuid4().hex[:16], 0)
        return position

    def _sequence(
        self, data: dict[str, Any], now: float, now_ms: int, appends: list[dict[str, Any]], fresh: dict[str, _Seen]
    ) -> dict[str, Any]:
        channel, msg_id = data["c"], data.get("m")
        by_request = f"r/{data['r']}"
        by_msg_id = f"m/{channel}/{msg_id}" if msg_id is not None and self._idempotency_window_s else None
        for key, duplicate in ((by_request, False), (by_msg_id, True)):
            if key is None:
                continue
            seen = fresh.get(key) or self._seen.get(key, now)
            if seen is not None:
                return {"q": seen.seq, "t": seen.ts, "e": seen.epoch, "dup": duplicate}
        epoch, last = self._position(channel)
        seq = last + 1
        self._assigned[channel] = (epoch, seq)
        seen = _Seen(seq, now_ms, epoch, 0.0)
        fresh[by_request] = seen
        if by_msg_id is not None:
            fresh[by_msg_id] = seen
        record = {"c": channel, "q": seq, "t": now_ms, "e": epoch, "p": data["p"], "s": data["s"], "m": msg_id}
        appends.append({**record, "k": data["k"], "r": data["r"]})
        return {"q": seq, "t": now_ms, "e": epoch, "dup": False}

    async def _expire_members(self) -> None:
        """Drop instances silent for longer than the TTL; announce ``leave`` for users they held."""
        horizon = time.monotonic() - self._presence_ttl_s
        for instance in [i for i, seen in self._members.beats.items() if seen < horizon]:
            for channel, user in self._members.drop(instance):
                await self.announce(channel, {"presence": "leave", "user": user})

    # -- internals ---------------------------------------------------------------------------

    def _redacted_url(self) -> str:
        scheme, _, rest = self._url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"

    def _require_out(self) -> aio_pika.abc.AbstractChannel:
        if self._out is None or self._lost.is_set() or self._closed:
            raise BrokerUnavailable("rabbitmq broker is not connected")
        return self._out

    def _require_appender(self) -> aio_pika.abc.AbstractChannel:
        if self._appender is None or self._lost.is_set():
            raise BrokerUnavailable("rabbitmq broker is not connected")
        return self._appender

    def _require_notice(self) -> aio_pika.abc.AbstractExchange:
        if self._notice is None or self._lost.is_set():
            raise BrokerUnavailable("rabbitmq broker is not connected")
        return self._notice

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(op(), timeout=self._op_timeout_s * 2)
        except BrokerUnavailable:
            raise
        except _BACKEND_ERRORS as exc:
            raise BrokerUnavailable(f"rabbitmq: {exc!r}") from exc
