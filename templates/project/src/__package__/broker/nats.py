"""NATS broker: JetStream sequences and stores, core subjects fan out, KV holds presence.

Why this shape:

* **JetStream is the sequencer.** Every publish goes to a stream subject of its channel with the
  header ``Nats-Expected-Last-Subject-Sequence`` (optimistic concurrency): two instances
  publishing at once cannot both take the same ``seq``; the loser re-reads the tail and retries.
  The channel ``seq`` travels in a header, so it survives in the stream. Channels without history
  go to a memory stream that keeps one message per subject (only the tail, for sequencing);
  channels with history go to a file stream that keeps ``history_size`` per subject.
* **Idempotency is JetStream's own.** ``Nats-Msg-Id`` deduplicates within the stream's
  ``duplicate_window`` (the project's idempotency window); a duplicate is answered with the stored
  message's ``seq``.
* **Core subjects carry live traffic.** After the stream acknowledged a message, the publisher sends
  it on the channel's core subject; only instances with local members subscribe. Two publishers
  may reorder their fan-outs, and core NATS drops while reconnecting, so a
  :class:`~.ordering.SequenceGate` holds messages behind a gap and refills it from the stream
  (channels with history) or lets it show after a short wait (channels without).
* **Epoch = identity of the stream.** Each stream is created with a random epoch in its
  description. A stream recreated after data loss (memory stream after a restart) gets a new one.
* **Presence lives in a KV bucket with a TTL.** One key per member connection
  (``<channel>.<user>.<instance>.<conn>``), re-put by its instance every third of the TTL;
  a crashed instance's keys expire.

Every backend error is raised as :class:`BrokerUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

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

_WRONG_LAST_SEQUENCE = 10071
_STREAM_NAME_IN_USE = 10058
_SAFE = re.compile(r"[A-Za-z0-9_-]")
_H_SEQ, _H_TS = "Wsf-Seq", "Wsf-Ts"
_EPHEMERAL, _KEPT = "e", "h"




def encode_token(text: str) -> str:
    """One subject token / KV key segment for any string: ``[A-Za-z0-9_-]`` kept, the rest ``=XX``."""
    return "".join(c if _SAFE.match(c) else "".join(f"={b:02X}" for b in c.encode()) for c in text) or "="


def decode_token(token: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=" and i + 3 <= len(token):
            raw += bytes.fromhex(token[i + 1 : i + 3])
            i += 3
        else:
            raw += token[i].encode()
            i += 1
    return raw.decode()


_BACKEND_ERRORS = (nats.errors.Error, OSError, TimeoutError)


def _kind(options: ChannelOptions) -> str:
    return _KEPT if options.durable or options.history_size > 0 else _EPHEMERAL




class NatsBroker:
    """:class:`~.base.Broker` over NATS with JetStream.

    Args:
        url: ``nats://host:port`` (comma-separated for a cluster).
            ``prefix``, ``presence_ttl_s`` and ``op_timeout_s`` may also be given as URL query
            parameters; those win over the arguments.
        prefix: subject prefix and stream/bucket name stem, so several projects share a server.
        idempotency_window_s: JetStream ``duplicate_window``; 0 disables deduplication.
        presence_ttl_s: how long a member survives without a refresh from its instance.
        max_history: per-channel cap of the history stream (the largest ``history_size``).
        reorder_wait_s: how long a channel without history waits for a late message before
            showing the gap.
        refill_deadline_s: how long a refill that fails while NATS is connected is retried before
            the gap is given up (subscribers then get ``resync``). Time spent waiting for a
            reconnect does not count: a gap is never given up because NATS was down.
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
        reorder_wait_s: float = 0.05,
        refill_deadline_s: float = 10.0,
        instance_id: str | None = None,
    ) -> None:
        url, from_url = split_url_options(url)
        prefix = from_url.get("prefix", prefix)
        presence_ttl_s = float(from_url.get("presence_ttl_s", presence_ttl_s))
        op_timeout_s = float(from_url.get("op_timeout_s", op_timeout_s))
        self._url = url
        self._prefix = encode_token(prefix).replace("-", "_")
        self._idempotency_window_s = idempotency_window_s
        self._presence_ttl_s = presence_ttl_s
        self._op_timeout_s = op_timeout_s
        self._max_history = max_history
        self._reorder_wait_s = reorder_wait_s
        self._refill_deadline_s = refill_deadline_s
        self._instance = instance_id or uuid.uuid4().hex[:12]
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._epochs: dict[str, str] = {}
        self._tails: dict[str, tuple[int, int]] = {}
        """subject -> (stream seq, channel seq) of the newest message this instance knows of."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._on_message: OnMessage | None = None
        self._gate = SequenceGate()
        self._kinds: dict[str, str] = {}
        self._subs: dict[str, Subscription] = {}
        self._fills: dict[str, asyncio.Task[None]] = {}
        self._local_members: dict[str, dict[str, str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._ready.is_set() and self._nc is not None and self._nc.is_connected and not self._closed

    @property
    def instance_id(self) -> str:
        return self._instance

    async def ping(self) -> None:
        """One JetStream request/reply round trip (account info), within the operation deadline.

        Not ``nc.flush``: a flush that times out leaves a cancelled PONG future behind, and the
        late PONG then breaks nats-py's read loop (``InvalidStateError``) and the connection.
        JetStream answering is also what publishes need, more than the server answering PINGs.
        """
        js = self._require_js()
        try:
            async with asyncio.timeout(self._op_timeout_s):
                await js.account_info()
        except (*_BACKEND_ERRORS, nats.errors.Error) as exc:
            raise BrokerUnavailable(f"nats health check: {exc!r}") from exc

    async def start(self, on_message: OnMessage) -> None:
        """Connect; raises :class:`BrokerUnavailable` if NATS is unreachable, but keeps trying."""
        self._on_message = on_message
        self._tasks.append(asyncio.create_task(self._connect_forever(), name="nats-broker-connect"))
        self._tasks.append(asyncio.create_task(self._refresh_presence_forever(), name="nats-presence"))
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=self._op_timeout_s * 2)
        except TimeoutError as exc:
            raise BrokerUnavailable(f"nats not reachable at {self._url}") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in [*self._tasks, *self._fills.values()]:
            task.cancel()
        for task in [*self._tasks, *self._fills.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        nc = self._nc
        if nc is not None:
            with contextlib.suppress(*_BACKEND_ERRORS, BrokerUnavailable):
                await self._forget_local_members()
            with contextlib.suppress(Exception):
                await nc.close()
        self._ready.clear()

    async def _connect_forever(self) -> None:
        delay = 0.05
        while not self._closed and self._nc is None:
            try:
                self._nc = await nats.connect(
                    self._url,
                    connect_timeout=max(1, int(self._op_timeout_s)),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,
                    allow_reconnect=True,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                )
            except (*_BACKEND_ERRORS, nats.errors.NoServersError) as exc:
                log.debug("nats connect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        await self._setup_with_retry()

    async def _setup_with_retry(self) -> None:
        delay = 0.05
        while not self._closed:
            try:
                await self._setup()
                return
            except (*_BACKEND_ERRORS, BrokerUnavailable) as exc:
                log.warning("nats setup failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _setup(self) -> None:
        """Create or look up the streams and the presence bucket; (re)subscribe; refill gaps."""
        nc = self._require_nc()
        js = nc.jetstream(timeout=self._op_timeout_s)
        window = float(self._idempotency_window_s) if self._idempotency_window_s else 0.0
        await self._ensure_stream(js, _EPHEMERAL, api.StorageType.MEMORY, 1, window)
        await self._ensure_stream(js, _KEPT, api.StorageType.FILE, self._max_history, window)
        bucket = f"{self._prefix}_presence"
        try:
            self._kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            self._kv = await js.create_key_value(
                bucket=bucket, ttl=self._presence_ttl_s, storage=api.StorageType.MEMORY, history=1
            )
        self._js = js
        self._tails.clear()
        for channel in self._gate.tracked():
            if channel not in self._subs:
                await self._subscribe_core(channel)
        self._ready.set()
        for channel in self._gate.tracked():
            self._schedule_fill(channel, wait=0.0)

    async def _ensure_stream(
        self, js: JetStreamContext, kind: str, storage: api.StorageType, per_subject: int, window: float
    ) -> None:
        name = self._stream(kind)
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            config = api.StreamConfig(
                name=name,
                description=f"wsforge epoch={uuid.uuid4().hex[:16]}",
                subjects=[f"{self._prefix}.{kind}.>"],
                storage=storage,
                max_msgs_per_subject=per_subject,
                duplicate_window=window or 0.001,
                allow_direct=True,
                discard=api.DiscardPolicy.OLD,
            )
            try:
                info = await js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:
                    raise
                # Another instance created it first (both noticed a lost store): adopt its epoch.
                info = await js.stream_info(name)
        description = info.config.description or ""
        self._epochs[kind] = description.rpartition("epoch=")[2] or name

    async def _on_disconnected(self) -> None:
        if self._ready.is_set():
            log.warning("nats broker disconnected")
        # Not ready again until _setup has looked the streams up after the reconnect: a publish
        # in between would carry the epoch of a stream the server may have lost, and subscribers
        # would take its restarted seq for duplicates.
        self._ready.clear()

    async def _on_reconnected(self) -> None:
        log.info("nats broker reconnected")
        # A restarted server may have lost the memory stream; recreate it and refill gaps.
        self._tasks.append(asyncio.create_task(self._setup_with_retry(), name="nats-broker-setup"))

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats error: %s", exc)

    # -- interest ----------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        if self._gate.is_tracked(channel):
            return
        self._gate.track(channel)
        if self.healthy:
            try:
                await self._subscribe_core(channel)
            except _BACKEND_ERRORS as exc:
                log.warning("nats subscribe %s failed: %s", channel, exc)

    async def unsubscribe(self, channel: str) -> None:
        self._gate.forget(channel)
        fill = self._fills.pop(channel, None)
        if fill is not None:
            fill.cancel()
        sub = self._subs.pop(channel, None)
        if sub is not None:
            with contextlib.suppress(*_BACKEND_ERRORS):
                await sub.unsubscribe()

    async def _subscribe_core(self, channel: str) -> None:
        nc = self._require_nc()
        self._subs[channel] = await nc.subscribe(self._live_subject(channel), cb=self._receive)
        # Interest must be in force when subscribe() returns: a PING/PONG round trip guarantees the
        # server processed the SUB, so a publish from another instance right after cannot miss it.
        await nc.flush()

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
        kind = _kind(options)
        self._kinds[channel] = kind
        subject = self._subject(channel, kind)
        body = orjson.dumps({"p": payload, "s": sender, "m": msg_id})
        lock = self._locks.setdefault(subject, asyncio.Lock())
        async with lock:
            message, duplicate = await self._call(lambda: self._append(subject, channel, body, msg_id))
            epoch = self._epochs.get(kind, "")
            frame = b"%d:%d:%s:%s:" % (message.seq, message.ts, epoch.encode(), kind.encode()) + body
            # Not for duplicates: an instance that subscribed since would take the old message as
            # its starting point. If the first attempt died between the stream's ack and its
            # fan-out, subscribers see the gap at the next message and refill it from the stream.
            if not duplicate:
                await self._call(lambda: self._require_nc().publish(self._live_subject(channel), frame))
        return PublishResult(
            Message(channel, message.seq, message.ts, payload, sender, msg_id, epoch or None), duplicate=duplicate
        )

    async def _append(
        self, subject: str, channel: str, body: bytes, msg_id: str | None
    ) -> tuple[Message, bool]:
        js = self._require_js()
        for _attempt in range(100):
            stream_seq, last = self._tails.get(subject) or await self._tail(subject)
            ts = int(time.time() * 1000)
            headers = {
                _H_SEQ: str(last + 1),
                _H_TS: str(ts),
                api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(stream_seq),
            }
            if msg_id and self._idempotency_window_s:
                headers[api.Header.MSG_ID] = f"{encode_token(channel)}.{msg_id}"
            try:
                ack = await js.publish(subject, body, headers=headers)
            except nats.js.errors.APIError as exc:
                if exc.err_code == _WRONG_LAST_SEQUENCE:
                    self._tails.pop(subject, None)
                    continue
                raise
            if ack.duplicate:
                stored = await js.get_msg(self._stream_of(subject), ack.seq, direct=True)
                original = self._decode_stored(channel, stored, self._epochs.get(self._kind_of(subject)))
                return original, True
            self._tails[subject] = (ack.seq, last + 1)
            return Message(channel, last + 1, ts, None), False
        raise BrokerUnavailable(f"nats: too much contention publishing to {channel}")

    async def _tail(self, subject: str) -> tuple[int, int]:
        js = self._require_js()
        try:
            raw = await js.get_msg(self._stream_of(subject), subject=subject, direct=True)
        except nats.js.errors.NotFoundError:
            return 0, 0
        headers = raw.headers or {}
        return int(raw.seq or 0), int(headers.get(_H_SEQ, 0))

    async def announce(self, channel: str, payload: Any) -> None:
        frame = b"0:%d:::" % int(time.time() * 1000) + orjson.dumps({"p": payload})
        await self._call(lambda: self._require_nc().publish(self._live_subject(channel), frame))

    async def history(
        self, channel: str, since_seq: int, options: ChannelOptions, *, limit: int = 1000
    ) -> History:
        kind = _kind(options)
        self._kinds[channel] = kind
        return await self._call(
            lambda: self._history(channel, kind, since_seq, kept_messages(options), options, limit)
        )

    async def _history(
        self, channel: str, kind: str, since_seq: int, keep: int, options: ChannelOptions, limit: int
    ) -> History:
        js = self._require_js()
        subject = self._subject(channel, kind)
        _, last = await self._tail(subject)
        epoch = self._epochs.get(kind, "")
        # A subscribing server answers its client with this position: the gate must hold it too.
        self._gate.anchor(channel, epoch, last)
        if since_seq == last:
            return History(messages=[], epoch=epoch, last_seq=last, recovered=True)
        if since_seq > last or keep == 0 or limit <= 0:
            return History(messages=[], epoch=epoch, last_seq=last, recovered=False)
        start = max(since_seq + 1, last - keep + 1)
        cutoff = int(time.time() * 1000) - options.history_ttl_s * 1000 if options.history_ttl_s else None
        messages: list[Message] = []
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=max(5.0, self._op_timeout_s * 2),
            mem_storage=True,
        )
        sub = await js.pull_subscribe(subject, stream=self._stream(kind), config=config)
        try:
            seen = 0
            while seen < last and len(messages) < limit:
                try:
                    batch = await sub.fetch(min(256, last), timeout=self._op_timeout_s)
                except nats.errors.TimeoutError:
                    break
                for msg in batch:
                    headers = msg.headers or {}
                    seq = int(headers.get(_H_SEQ, 0))
                    seen = max(seen, seq)
                    ts = int(headers.get(_H_TS, 0))
                    # Messages published after the tail was read belong to the live path: a
                    # replay past last_seq would be delivered twice by a subscribing server.
                    if seq < start or seq > last or (cutoff is not None and ts < cutoff):
                        continue
                    if len(messages) >= limit:
                        continue
                    messages.append(self._decode(channel, seq, ts, msg.data, epoch or None))
        finally:
            with contextlib.suppress(*_BACKEND_ERRORS):
                await sub.unsubscribe()
        recovered = bool(messages) and messages[0].seq == since_seq + 1
        return History(messages=messages, epoch=epoch, last_seq=last, recovered=recovered)

    # -- presence ----------------------------------------------------------------------------

    async def presence_join(self, channel: str, user: str, conn_id: str) -> bool:
        self._local_members.setdefault(channel, {})[conn_id] = user
        key = self._member_key(channel, user, conn_id)

        async def join() -> bool:
            kv = self._require_kv()
            existing = await self._keys(self._user_pattern(channel, user))
            await kv.put(key, user.encode())
            return not existing

        return await self._call(join)

    async def presence_leave(self, channel: str, user: str, conn_id: str) -> bool:
        members = self._local_members.get(channel)
        if members is not None:
            members.pop(conn_id, None)
            if not members:
                del self._local_members[channel]
        key = self._member_key(channel, user, conn_id)

        async def leave() -> bool:
            if key not in await self._keys(self._user_pattern(channel, user)):
                return False  # unknown or expired: its leave is not announced twice
            await self._purge(key)
            return not await self._keys(self._user_pattern(channel, user))

        return await self._call(leave)

    async def presence_members(self, channel: str) -> list[PresenceMember]:
        keys = await self._call(lambda: self._keys(f"{encode_token(channel)}.>"))
        counts: dict[str, int] = {}
        for key in keys:
            user = decode_token(key.split(".")[1])
            counts[user] = counts.get(user, 0) + 1
        return [PresenceMember(user, n) for user, n in sorted(counts.items())]

    async def _keys(self, pattern: str) -> list[str]:
        """Live member keys matching ``pattern``, from the bucket stream's per-subject counts.

        Not ``kv.watch``: nats-py's watcher can signal "initial values done" before every value
        arrived (nats-io/nats.py#842, #995), so a member on another instance went unseen and a
        leave was announced while the user was still connected. One stream-info request has no
        such race. Leaves purge the subject from the stream (``_purge``), so no markers are counted.
        """
        self._require_kv()
        bucket = f"{self._prefix}_presence"
        subjects = f"$KV.{bucket}."
        info = await self._require_js().stream_info(f"KV_{bucket}", subjects_filter=subjects + pattern)
        return [subject[len(subjects) :] for subject, n in (info.state.subjects or {}).items() if n]

    async def _purge(self, key: str) -> None:
        """Remove a member key without leaving a delete marker behind (see ``_keys``)."""
        bucket = f"{self._prefix}_presence"
        await self._require_js().purge_stream(f"KV_{bucket}", subject=f"$KV.{bucket}.{key}")

    @staticmethod
    def _user_pattern(channel: str, user: str) -> str:
        return f"{encode_token(channel)}.{encode_token(user)}.>"

    def _member_key(self, channel: str, user: str, conn_id: str) -> str:
        return f"{encode_token(channel)}.{encode_token(user)}.{self._instance}.{encode_token(conn_id)}"

    async def _refresh_presence_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._presence_ttl_s / 3)
            if not self.healthy:
                continue
            try:
                for channel, members in list(self._local_members.items()):
                    for conn_id, user in list(members.items()):
                        await self._call(self._put_member(channel, user, conn_id))
            except BrokerUnavailable:
                continue

    def _put_member(self, channel: str, user: str, conn_id: str) -> Callable[[], Awaitable[int]]:
        key = self._member_key(channel, user, conn_id)
        return lambda: self._require_kv().put(key, user.encode())

    async def _forget_local_members(self) -> None:
        self._require_kv()
        for channel, members in list(self._local_members.items()):
            for conn_id, user in list(members.items()):
                await self._purge(self._member_key(channel, user, conn_id))
        self._local_members.clear()

    # -- delivery ----------------------------------------------------------------------------

    async def _receive(self, msg: Msg) -> None:
        channel = self._channel_of_live(msg.subject)
        seq_s, ts_s, epoch, kind, body = msg.data.split(b":", 4)
        message = self._decode(channel, int(seq_s), int(ts_s), body, epoch.decode() or None)
        if message.seq == 0:
            if self._gate.is_tracked(channel):
                self._deliver([message])
            return
        self._kinds[channel] = kind.decode()
        self._deliver(self._gate.offer(message, message.epoch))
        if self._gate.gap(channel) is not None:
            wait = 0.0 if kind.decode() == _KEPT else self._reorder_wait_s
            self._schedule_fill(channel, wait)

    def _schedule_fill(self, channel: str, wait: float) -> None:
        if channel in self._fills and not self._fills[channel].done():
            return
        self._fills[channel] = asyncio.create_task(self._fill(channel, wait), name=f"nats-fill-{channel}")

    async def _fill(self, channel: str, wait: float) -> None:
        """Fetch what the core subject missed from the stream; give up visibly if it is gone.

        A live message may arrive between a reconnect and the end of :meth:`_setup` (nats-py
        restores core subscriptions first): the refill then waits until the broker is ready
        instead of failing. A refill that fails while connected is retried with backoff for
        ``refill_deadline_s``. Only then, or when the stream no longer holds the range, is the gap
        given up, with a lost notice so that subscribers get ``resync``.
        """
        if wait:
            await asyncio.sleep(wait)
        deadline = time.monotonic() + self._refill_deadline_s
        delay = 0.05
        while not self._closed and self._gate.is_tracked(channel) and self._kinds.get(channel) == _KEPT:
            if not self._ready.is_set():
                await self._ready.wait()
                deadline = time.monotonic() + self._refill_deadline_s
            try:
                covered = await self._refill_once(channel)
            except (*_BACKEND_ERRORS, BrokerUnavailable) as exc:
                if time.monotonic() >= deadline:
                    log.warning("nats refill of %s failed for %.0f s: %s", channel, self._refill_deadline_s, exc)
                    break
                log.info("nats refill of %s failed, retrying: %s", channel, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            gap = self._gate.gap(channel)
            if gap is None or covered is None or covered >= gap[1] or time.monotonic() >= deadline:
                break
            # The gap opened after the tail was read (a live message overtook its predecessor
            # meanwhile): read again rather than give up on messages the stream has.
        self._deliver(self._gate.give_up(channel, int(time.time() * 1000)))

    async def _refill_once(self, channel: str) -> int | None:
        """Offer the stream's messages after the gate's position; the stream tail read, or None."""
        epoch, last = self._gate.position(channel)
        if last is None:
            return None
        options = ChannelOptions(durable=True)
        history = await self._history(channel, _KEPT, last, self._max_history, options, 10_000)
        if epoch is not None and history.epoch != epoch:
            # The stream was recreated (data lost): the new numbering starts at 1.
            self._gate.reset(channel, history.epoch, 0)
            history = await self._history(channel, _KEPT, 0, self._max_history, options, 10_000)
        for message in history.messages:
            self._deliver(self._gate.offer(message, history.epoch))
        return history.last_seq

    def _deliver(self, messages: list[Message]) -> None:
        if self._on_message is None:
            return
        for message in messages:
            try:
                self._on_message(message)
            except Exception:
                log.exception("on_message failed for %s seq %s", message.channel, message.seq)

    # -- internals ---------------------------------------------------------------------------

    def _stream(self, kind: str) -> str:
        return f"{self._prefix.upper()}_{kind.upper()}"

    def _stream_of(self, subject: str) -> str:
        return self._stream(self._kind_of(subject))

    @staticmethod
    def _kind_of(subject: str) -> str:
        return subject.split(".")[1]

    def _subject(self, channel: str, kind: str) -> str:
        return f"{self._prefix}.{kind}.{encode_token(channel)}"

    def _live_subject(self, channel: str) -> str:
        return f"{self._prefix}.live.{encode_token(channel)}"

    def _channel_of_live(self, subject: str) -> str:
        return decode_token(subject.split(".", 2)[2])

    @staticmethod
    def _decode(channel: str, seq: int, ts: int, body: bytes, epoch: str | None) -> Message:
        data = orjson.loads(body)
        return Message(channel, seq, ts, data.get("p"), data.get("s"), data.get("m"), epoch)

    def _decode_stored(self, channel: str, raw: api.RawStreamMsg, epoch: str | None) -> Message:
        headers = raw.headers or {}
        return self._decode(
            channel, int(headers.get(_H_SEQ, 0)), int(headers.get(_H_TS, 0)), raw.data or b"{}", epoch
        )

    def _require_nc(self) -> NatsClient:
        if self._nc is None or self._closed:
            raise BrokerUnavailable("nats broker is not connected")
        return self._nc

    def _require_js(self) -> JetStreamContext:
        if self._js is None or not self.healthy:
            raise BrokerUnavailable("nats broker is not connected")
        return self._js

    def _require_kv(self) -> KeyValue:
        if self._kv is None or not self.healthy:
            raise BrokerUnavailable("nats broker is not connected")
        return self._kv

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(op(), timeout=self._op_timeout_s * 2)
        except BrokerUnavailable:
            raise
        except (*_BACKEND_ERRORS, nats.js.errors.Error) as exc:
            raise BrokerUnavailable(f"nats: {exc!r}") from exc
