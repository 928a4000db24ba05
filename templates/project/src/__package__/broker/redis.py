"""Redis broker: pub/sub fan-out, Streams for history, a Lua script as the single sequencer.

Why this shape:

* **One script per publish.** ``INCR`` of the channel counter, ``XADD`` into the channel's stream
  (stream id ``<seq>-0``, so replay is a plain ``XRANGE``), the idempotency key and the
  ``PUBLISH`` run atomically in Redis. Every instance therefore sees the same ``seq`` for the same
  message, and pub/sub carries messages in ``seq`` order.
* **Pub/sub is the live path, the stream is the safety net.** Pub/sub drops messages while a
  subscriber reconnects; the :class:`~.ordering.SequenceGate` notices the jump in ``seq`` and the
  reader refills the range from the stream before delivering, so a durable channel loses nothing
  and delivers nothing twice per instance.
* **Epoch = lifetime of the counter.** The epoch is written whenever the counter key is created.
  If Redis loses the counter (restart without persistence, eviction, ``FLUSHALL``) the next
  publish or read creates a new epoch, and clients that resume with the old one are told to resync
  instead of being fed a restarted sequence.
* **Idle channel state expires.** Counter and epoch get a TTL (``channel_ttl_s``, refreshed by
  every publish and replay read), so the keys of channels that stop being used (per-user,
  per-session, or names clients made up) do not pile up in Redis. A channel that comes back starts
  a new epoch, which is the lost-counter path above. Channels that keep history with no time limit
  keep their counter for as long as their stream.
* **Presence expires by itself.** Members live in a hash (``instance/conn -> user``) next to a
  sorted set of expiry times; every instance refreshes its own members in the background, and every
  presence script purges expired members first. A crashed instance's members are gone within
  ``presence_ttl_s``, and the instance whose script purged a user's last connection announces
  their ``presence.leave`` (the crashed one never will); refreshes run every third of the TTL, so
  any instance with members in the channel notices within about ``4/3 * presence_ttl_s``.
* **Interest follows local members.** The instance subscribes to the pub/sub channel of a
  channel only while the server has local subscribers for it.
* **Commands of one loop iteration share one round trip** (:class:`AutoPipeline`, what ioredis
  calls auto-pipelining). After a deploy every client reconnects at once, and each subscribe reads
  history (and joins presence) in Redis: one round trip per command made 1,000 subscribes take
  seconds. The scripts and ``PUBLISH`` of concurrent operations go out as one pipeline, and the
  pub/sub ``SUBSCRIBE`` of the channels first joined in one iteration as one command. Each command
  keeps its own outcome: an error fails only the operation that issued it.
* **History reads of one channel in one loop iteration are one read.** In the same storm every
  client resumes the shared channels (``broadcast:all``) from nearby positions; each read parsed
  and decoded the same stream entries again. They share one script call from the lowest position
  (ranges far apart stay separate reads), and each reader gets exactly the slice its own read
  would have returned.

All keys of one channel share a ``{channel}`` hash tag, so the scripts also work on Redis Cluster.
Every backend error is raised as :class:`BrokerUnavailable`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from .base import (
    BrokerBusy,
    BrokerUnavailable,
    ChannelOptions,
    History,
    Message,
    OnMessage,
    PresenceMember,
    PublishResult,
)
from .options import kept_messages, split_url_options
from .ordering import SequenceGate

log = logging.getLogger(__name__)

T = TypeVar("T")


# Counter and epoch (KEYS[1], KEYS[2]) live for ttl ms after their last use, or forever for ttl 0.
_KEEP_STATE = """
local function keep_state(ttl)
  for i = 1, 2 do
    if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
  end
end
"""

# KEYS: seq, epoch, stream, idem. ARGV: new_epoch, body, keep, stream_ttl_ms, idem_window_s,
# has_msg_id, pubsub channel, state_ttl_ms (0: keep the counter forever). Returns {duplicate, "seq:ts:epoch"}.
_PUBLISH = _KEEP_STATE + """
if ARGV[6] == '1' then
  local prior = redis.call('GET', KEYS[4])
  if prior then return {1, prior} end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[3])
else
  redis.call('SET', KEYS[2], ARGV[1], 'NX')
end
local seq = redis.call('INCR', KEYS[1])
local epoch = redis.call('GET', KEYS[2])
keep_state(tonumber(ARGV[8]))
local t = redis.call('TIME')
local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local head = string.format('%d:%d:%s', seq, ts, epoch)
local keep = tonumber(ARGV[3])
if keep > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', keep, string.format('%d-0', seq), 't', ts, 'b', ARGV[2])
  local ttl = tonumber(ARGV[4])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
end
local window = tonumber(ARGV[5])
if ARGV[6] == '1' and window > 0 then redis.call('SET', KEYS[4], head, 'EX', window) end
redis.call('PUBLISH', ARGV[7], head .. ':' .. ARGV[2])
return {0, head}
"""

# KEYS: seq, epoch, stream. ARGV: new_epoch, since_seq, count, keep, state_ttl_ms.
# Returns {last, epoch, now_ms, entries}.
_HISTORY = _KEEP_STATE + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], 0)
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[3])
else
  redis.call('SET', KEYS[2], ARGV[1], 'NX')
end
local last = tonumber(redis.call('GET', KEYS[1]))
local epoch = redis.call('GET', KEYS[2])
keep_state(tonumber(ARGV[5]))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = {}
local keep = tonumber(ARGV[4])
local count = tonumber(ARGV[3])
if keep > 0 and count > 0 then
  local start = math.max(tonumber(ARGV[2]) + 1, last - keep + 1)
  entries = redis.call('XRANGE', KEYS[3], string.format('%d-0', start), '+', 'COUNT', count)
end
return {last, epoch, now, entries}
"""

_PRESENCE_PURGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
local gone = {}
for _, f in ipairs(dead) do
  local u = redis.call('HGET', KEYS[1], f)
  redis.call('HDEL', KEYS[1], f)
  redis.call('ZREM', KEYS[2], f)
  if u then
    if redis.call('HINCRBY', KEYS[3], u, -1) <= 0 then
      redis.call('HDEL', KEYS[3], u)
      table.insert(gone, u)
    end
  end
end
local function add(field, user, ttl)
  redis.call('ZADD', KEYS[2], now + ttl, field)
  local prev = redis.call('HGET', KEYS[1], field)
  if prev == user then return 0 end
  if prev then
    if redis.call('HINCRBY', KEYS[3], prev, -1) <= 0 then redis.call('HDEL', KEYS[3], prev) end
  end
  redis.call('HSET', KEYS[1], field, user)
  return redis.call('HINCRBY', KEYS[3], user, 1) == 1 and 1 or 0
end
local function touch(ttl)
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], 2 * ttl) end
end
"""

# Every presence script returns {result, gone}: ``gone`` lists the users whose last connection
# this call found expired (their instance died). The purge is atomic, so exactly one call sees
# each of them, and that instance announces their presence.leave.

# KEYS: conns, expiry, users. ARGV: field, user, ttl_ms. Result 1 on the user's first connection.
_PRESENCE_JOIN = (
    _PRESENCE_PURGE
    + """
local first = add(ARGV[1], ARGV[2], tonumber(ARGV[3]))
touch(tonumber(ARGV[3]))
return {first, gone}
"""
)

# KEYS: conns, expiry, users. ARGV: field, user. Result 1 when this removed the user's last
# connection (0 for an unknown or already expired one: its leave is not announced twice).
_PRESENCE_LEAVE = (
    _PRESENCE_PURGE
    + """
local u = redis.call('HGET', KEYS[1], ARGV[1])
if u then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  if redis.call('HINCRBY', KEYS[3], u, -1) <= 0 then
    redis.call('HDEL', KEYS[3], u)
    return {1, gone}
  end
  return {0, gone}
end
return {0, gone}
"""
)

# KEYS: conns, expiry, users. ARGV: ttl_ms, field1, user1, field2, user2, ...
# Re-adds members lost with a Redis restart, so presence heals without reconnecting clients.
_PRESENCE_REFRESH = (
    _PRESENCE_PURGE
    + """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do add(ARGV[i], ARGV[i + 1], ttl) end
touch(ttl)
return {0, gone}
"""
)

# KEYS: conns, expiry, users. Result: the flat user/count list.
_PRESENCE_MEMBERS = _PRESENCE_PURGE + "\nreturn {redis.call('HGETALL', KEYS[3]), gone}\n"


_PIPELINE_MAX = 512
"""Commands per pipeline at most: an iteration that issues more sends several pipelines, on as
many pooled connections, so no single reply read grows without bound."""

_PIPELINES_IN_FLIGHT = 4
"""Pipelines awaiting their replies at once, at most. Redis runs commands one at a time, so more
connections add no throughput; commands issued meanwhile wait and leave together as one larger
pipeline. It also keeps the pool small: under a storm a CPU-bound server that opened a connection
per batch timed out connecting (and opened its circuit) where a few warm connections do not."""

_Queued = tuple[tuple[Any, ...], str | None, "asyncio.Future[Any]", float]
"""A command waiting for the next flush: its arguments, its script source (EVALSHA), its future
and its deadline (loop time)."""


def _unavailable(exc: BaseException, pool_size: int) -> BrokerUnavailable:
    """The broker error a redis-py failure maps to (one new instance per caller)."""
    if isinstance(exc, RedisConnectionError) and "No connection available" in str(exc):
        # BlockingConnectionPool's wait timed out: our pool is exhausted, Redis is fine.
        error: BrokerUnavailable = BrokerBusy(f"redis: all {pool_size} connections busy")
    else:
        error = BrokerUnavailable(f"redis: {exc}")
    error.__cause__ = exc
    return error


class AutoPipeline:
    """Sends the commands issued during one event-loop iteration to Redis as one pipeline.

    Why: a reconnect storm is thousands of subscribes at once, each reading history (and joining
    presence) in Redis. One round trip per command costs a pooled connection, a write and a read
    per command on both sides, and the wait for a free connection once the pool is busy.
    :meth:`call` queues the command and returns a future; the first call of an iteration schedules
    the flush with ``call_soon``, which runs once the callbacks and tasks already ready in this
    iteration have run (what ioredis calls auto-pipelining). N concurrent operations then cost one
    round trip per step instead of N.

    What it keeps:

    * **Each command fails alone.** Replies are read with ``raise_on_error=False``: a script error
      fails only the future of the command that caused it. A script Redis no longer knows
      (``NOSCRIPT``: restarted, ``SCRIPT FLUSH``) is sent again with its source, as ``EVAL``.
    * **The operation deadline, as for a single command.** A pipeline runs with the socket
      timeout of a single command, so a hung Redis fails the whole batch within ``op_timeout_s``
      of its sending with :class:`BrokerUnavailable`, however long the batch. At most
      :data:`_PIPELINES_IN_FLIGHT` pipelines wait for replies; a command queued behind them waits
      at most ``op_timeout_s`` for a slot, then fails with :class:`BrokerBusy` (this instance's own
      backlog, which the circuit breaker does not count). Worst case two deadlines, as a single
      command waiting for a pooled connection and then for its reply always had. Bounding a
      pipeline by its oldest command's deadline instead failed healthy subscribes of a server
      whose loop was busy for longer than the deadline (200 clients in the test process).
    * **Order.** A pipeline keeps the order of its commands, and one caller's commands follow each
      other (each awaits its reply before the next is issued).
    * A caller that gave up (cancelled) before the flush is left out of the pipeline.

    ``round_trips`` and ``commands`` count the pipelines and the commands sent (tests and
    ``bench/storm.py`` read them).
    """

    def __init__(self, client: aioredis.Redis, pool_size: int, op_timeout_s: float) -> None:
        self._client = client
        self._pool_size = pool_size
        self._op_timeout_s = op_timeout_s
        self._max_in_flight = max(1, min(_PIPELINES_IN_FLIGHT, pool_size))
        self._queue: list[_Queued] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()
        self._expiry: asyncio.TimerHandle | None = None
        self.round_trips = 0
        self.commands = 0

    def call(self, args: tuple[Any, ...], script: str | None = None) -> asyncio.Future[Any]:
        """Queue ``args`` (a Redis command) for this iteration's pipeline; the future gets its reply.

        ``script``: the source of the script an ``EVALSHA`` command runs, resent if Redis lost it.
        The future fails with :class:`BrokerUnavailable` (or :class:`BrokerBusy`).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, script, future, loop.time() + self._op_timeout_s))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    async def aclose(self) -> None:
        """Cancel what is queued and in flight (the broker is closing)."""
        queued, self._queue = self._queue, []
        for _, _, future, _ in queued:
            future.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        queue = [item for item in self._queue if not item[2].done()]  # callers that gave up
        while queue and len(self._running) < self._max_in_flight:
            batch, queue = queue[:_PIPELINE_MAX], queue[_PIPELINE_MAX:]
            task = loop.create_task(self._send(batch))
            self._running.add(task)
            task.add_done_callback(self._sent)
        self._queue = queue
        if queue and self._expiry is None:
            self._expiry = loop.call_at(queue[0][3], self._expire)

    def _sent(self, task: asyncio.Task[None]) -> None:
        """A pipeline is answered: what queued up behind it leaves now, as one pipeline."""
        self._running.discard(task)
        if self._queue and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _expire(self) -> None:
        """Fail the queued commands whose deadline passed while every pipeline slot was busy."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        now, kept = loop.time(), []
        for item in self._queue:
            if item[3] > now:
                kept.append(item)
            elif not item[2].done():
                busy = BrokerBusy(f"redis: {len(self._running)} pipelines unanswered for {self._op_timeout_s} s")
                item[2].set_exception(busy)
        self._queue = kept
        if kept:
            self._expiry = loop.call_at(kept[0][3], self._expire)

    async def _send(self, batch: list[_Queued]) -> None:
        try:
            replies = await self._execute([item[0] for item in batch])
            lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError) and batch[i][1]]
            if lost:
                again = await self._execute([("EVAL", batch[i][1], *batch[i][0][2:]) for i in lost])
                for i, reply in zip(lost, again, strict=True):
                    replies[i] = reply
        except asyncio.CancelledError:
            for _, _, future, _ in batch:
                future.cancel()
            raise
        except (RedisError, OSError, TimeoutError) as exc:  # the whole pipeline: connection, timeout
            for _, _, future, _ in batch:
                if not future.done():
                    future.set_exception(_unavailable(exc, self._pool_size))
            return
        except Exception as exc:  # a bug, not an outage: each caller sees it as is (never counted)
            for _, _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future, _), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(_unavailable(reply, self._pool_size))
            else:
                future.set_result(reply)

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.round_trips += 1
        self.commands += len(commands)
        async with self._client.pipeline(transaction=False) as pipe:
            for args in commands:
                pipe.execute_command(*args)
            return await pipe.execute(raise_on_error=False)


def _now_epoch() -> str:
    return uuid.uuid4().hex[:16]


def _decode_body(channel: str, seq: int, ts: int, body: bytes, epoch: str | None) -> Message:
    data = orjson.loads(body)
    return Message(
        channel=channel,
        seq=seq,
        ts=ts,
        payload=data.get("p"),
        sender=data.get("s"),
        msg_id=data.get("m"),
        epoch=epoch,
    )


_Want = tuple[int, int, "asyncio.Future[History]"]
"""One history read waiting for its channel's shared read: ``since_seq``, ``limit``, its answer."""


class _HistoryReads:
    """The history reads of one channel (and storage policy) issued in one loop iteration."""

    __slots__ = ("wants",)

    def __init__(self) -> None:
        self.wants: list[_Want] = []


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail ``future`` with an error of its own: a shared read's failure reaches each reader as
    a new instance (one exception object raised in many tasks would chain their tracebacks)."""
    if future.done():
        return
    if isinstance(exc, BrokerUnavailable):
        error: BaseException = type(exc)(*exc.args)
        error.__cause__ = exc.__cause__ or exc
    elif isinstance(exc, (RedisError, OSError, TimeoutError)):
        error = BrokerUnavailable(f"redis: {exc}")
        error.__cause__ = exc
    else:
        error = exc
    future.set_exception(error)


class RedisBroker:
    """:class:`~.base.Broker` over one Redis (or a Redis Cluster through hash tags).

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://`` (redis-py URL syntax).
            ``prefix``, ``presence_ttl_s``, ``channel_ttl_s`` and ``op_timeout_s`` may also be
            given as URL query parameters; those win over the arguments.
        prefix: namespace of every key and pub/sub channel, so several projects share a Redis.
        idempotency_window_s: how long a ``msg_id`` is remembered; 0 disables deduplication.
        presence_ttl_s: how long a member survives without a refresh from its instance.
        channel_ttl_s: how long a channel's counter and epoch outlive its last publish or replay
            read (at least its history's TTL); 0 keeps them forever. A channel used again later
            starts over with a new epoch, so its clients resync.
        op_timeout_s: socket timeout of one command; a slower Redis counts as unavailable.
        pool_size: connections for commands. Operations beyond it wait for a free connection up to
            ``op_timeout_s`` and then fail with :class:`BrokerBusy`, which the circuit breaker does
            not count (redis-py's own pool would refuse the 101st at once, as a connection error).
        instance_id: names this process in presence entries; random by default.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "wsforge",
        idempotency_window_s: float = 120,
        presence_ttl_s: float = 30.0,
        channel_ttl_s: float = 7 * 24 * 3600,
        op_timeout_s: float = 2.0,
        reconnect_max_s: float = 2.0,
        pool_size: int = 200,
        instance_id: str | None = None,
    ) -> None:
        url, from_url = split_url_options(url)
        prefix = from_url.get("prefix", prefix)
        presence_ttl_s = float(from_url.get("presence_ttl_s", presence_ttl_s))
        channel_ttl_s = float(from_url.get("channel_ttl_s", channel_ttl_s))
        op_timeout_s = float(from_url.get("op_timeout_s", op_timeout_s))
        self._url = url
        self._prefix = prefix
        # SET EX takes whole seconds; round up so a retry at the window's edge is still caught.
        self._idempotency_window_s = math.ceil(idempotency_window_s)
        self._presence_ttl_ms = max(1, int(presence_ttl_s * 1000))
        self._channel_ttl_ms = max(0, int(channel_ttl_s * 1000))
        self._op_timeout_s = op_timeout_s
        self._pool_size = pool_size
        self._reconnect_max_s = reconnect_max_s
        self._health: aioredis.Redis | None = None
        self._instance = instance_id or uuid.uuid4().hex[:12]
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._on_message: OnMessage | None = None
        self._gate = SequenceGate()
        self._local_members: dict[str, dict[str, str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._closed = False
        self._scripts: dict[str, Any] = {}
        self._pipeline: AutoPipeline | None = None
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        """Pub/sub channel -> resolved by the reader when Redis confirms its ``SUBSCRIBE``."""
        self._to_subscribe: list[str] = []
        """Channels first joined in this loop iteration: one ``SUBSCRIBE`` sends them all."""
        self._subscribing: set[asyncio.Task[None]] = set()
        self._history_reads: dict[tuple[str, ChannelOptions], _HistoryReads] = {}
        """History reads issued in this loop iteration, by channel: one script call answers them."""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._connected.is_set() and not self._closed

    @property
    def instance_id(self) -> str:
        return self._instance

    async def start(self, on_message: OnMessage) -> None:
        """Connect and start the reader; raises :class:`BrokerUnavailable` if Redis is unreachable.

        The reader keeps reconnecting in the background even after that error, so a server that
        starts while Redis is down recovers when Redis comes up.
        """
        self._on_message = on_message
        # One retry re-dials a pooled connection that a Redis restart broke (a connection error,
        # not a timeout: a hung Redis must fail within one operation deadline, not two).
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        pool = aioredis.BlockingConnectionPool.from_url(
            self._url,
            max_connections=self._pool_size,
            timeout=self._op_timeout_s,
            socket_connect_timeout=self._op_timeout_s,
            socket_timeout=self._op_timeout_s,
            retry=retry,
        )
        self._client = aioredis.Redis(connection_pool=pool)
        # Health checks get a connection of their own: a pool busy with publishes is not a sick Redis.
        self._health = aioredis.Redis.from_url(
            self._url,
            single_connection_client=True,
            socket_connect_timeout=self._op_timeout_s,
            socket_timeout=self._op_timeout_s,
            retry=retry,
        )
        for name, source in (
            ("publish", _PUBLISH),
            ("history", _HISTORY),
            ("join", _PRESENCE_JOIN),
            ("leave", _PRESENCE_LEAVE),
            ("refresh", _PRESENCE_REFRESH),
            ("members", _PRESENCE_MEMBERS),
        ):
            self._scripts[name] = self._client.register_script(source)
        self._pipeline = AutoPipeline(self._client, self._pool_size, self._op_timeout_s)
        self._tasks.append(asyncio.create_task(self._read_forever(), name="redis-broker-reader"))
        self._tasks.append(asyncio.create_task(self._refresh_presence_forever(), name="redis-presence"))
        try:
            await asyncio.wait_for(self._connected.wait(), timeout=self._op_timeout_s * 2)
        except TimeoutError as exc:
            raise BrokerUnavailable(f"redis not reachable at {self._redacted_url()}") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connected.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for task in list(self._subscribing):
            task.cancel()
        if self._pipeline is not None:
            await self._pipeline.aclose()
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._forget_local_members()
            await self._client.aclose()
            await self._client.connection_pool.disconnect()
            self._client = None
        if self._health is not None:
            await self._health.aclose()
            self._health = None

    # -- interest ----------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Record interest and return once Redis confirmed the pub/sub subscription.

        Waiting for the confirmation closes a race: the server reads history right after this
        returns, and a message published before Redis had processed ``SUBSCRIBE`` (it travels on
        another connection than that read) would be in neither. Unconfirmed within the operation
        timeout, or while disconnected, the subscription follows on the next reconnect as before.
        """
        key = self._pubsub_key(channel)
        if self._gate.is_tracked(channel):
            pending = self._confirmations.get(key.encode())
            if pending is not None:  # another session's subscribe of this channel is in flight
                await self._confirmed(channel, pending)
            return
        self._gate.track(channel)
        if self._pubsub is None or not self._connected.is_set():
            return
        loop = asyncio.get_running_loop()
        confirmation: asyncio.Future[None] = loop.create_future()
        self._confirmations[key.encode()] = confirmation
        # Channels first joined in this iteration share one SUBSCRIBE (a storm joins thousands).
        self._to_subscribe.append(channel)
        if len(self._to_subscribe) == 1:
            loop.call_soon(self._send_subscribes)
        try:
            await self._confirmed(channel, confirmation)
        finally:
            if self._confirmations.get(key.encode()) is confirmation:
                del self._confirmations[key.encode()]

    def _send_subscribes(self) -> None:
        channels, self._to_subscribe = self._to_subscribe, []
        keys: list[str] = []
        for channel in dict.fromkeys(channels):
            if self._gate.is_tracked(channel):
                keys.append(self._pubsub_key(channel))
            else:  # left again before this flush (its unsubscribe already ran): not subscribed
                self._release([self._pubsub_key(channel)])
        if not keys:
            return
        task = asyncio.get_running_loop().create_task(self._subscribe_keys(keys))
        self._subscribing.add(task)
        task.add_done_callback(self._subscribing.discard)

    async def _subscribe_keys(self, keys: list[str]) -> None:
        """One ``SUBSCRIBE`` for ``keys``; the reader resolves each confirmation as Redis sends it."""
        pubsub = self._pubsub
        if pubsub is None or not self._connected.is_set():
            self._release(keys)  # the reader's reconnect subscribes every tracked channel and refills
            return
        try:
            await pubsub.subscribe(*keys)
        except (RedisError, OSError) as exc:
            # The reader sees the same broken connection and resubscribes everything.
            log.warning("redis subscribe of %d channel(s) failed: %s", len(keys), exc)
            self._release(keys)

    def _release(self, keys: list[str]) -> None:
        """Let the subscribes waiting for ``keys`` go on without Redis's confirmation."""
        for key in keys:
            confirmation = self._confirmations.get(key.encode())
            if confirmation is not None and not confirmation.done():
                confirmation.set_result(None)

    async def _confirmed(self, channel: str, confirmation: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(confirmation), self._op_timeout_s)
        except TimeoutError:
            log.warning("redis subscribe %s: no confirmation within %.1f s", channel, self._op_timeout_s)

    async def unsubscribe(self, channel: str) -> None:
        if not self._gate.is_tracked(channel):
            return
        self._gate.forget(channel)
        pubsub = self._pubsub
        if pubsub is not None and self._connected.is_set():
            with contextlib.suppress(RedisError, OSError):
                await pubsub.unsubscribe(self._pubsub_key(channel))

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
        body = orjson.dumps({"p": payload, "s": sender, "m": msg_id})
        keep = kept_messages(options)
        window = self._idempotency_window_s if msg_id else 0
        keys = [
            self._key(channel, "seq"),
            self._key(channel, "epoch"),
            self._key(channel, "stream"),
            self._key(channel, f"idem:{msg_id or ''}"),
        ]
        args = [
            _now_epoch(),
            body,
            keep,
            options.history_ttl_s * 1000 if keep else 0,
            window,
            "1" if msg_id and window else "0",
            self._pubsub_key(channel),
            self._state_ttl_ms(options),
        ]
        duplicate, head = await self._call(lambda: self._script("publish", keys, args))
        seq, ts, epoch = head.decode().split(":", 2)
        message = Message(channel, int(seq), int(ts), payload, sender, msg_id, epoch)
        return PublishResult(message, duplicate=bool(duplicate))

    async def announce(self, channel: str, payload: Any) -> None:
        frame = b"0:%d::" % int(time.time() * 1000) + orjson.dumps({"p": payload})
        await self._call(lambda: self._command("PUBLISH", self._pubsub_key(channel), frame))

    async def history(
        self, channel: str, since_seq: int, options: ChannelOptions, *, limit: int = 1000
    ) -> History:
        """Read ``channel``'s position and the messages after ``since_seq`` (at most ``limit``).

        Reads of one channel issued in the same loop iteration share one script call (see
        :class:`_HistoryReads`): after a deploy thousands of clients resume a shared channel from
        nearby positions, and one ``XRANGE`` from the lowest of them, parsed and decoded once,
        answers them all, where one read each parsed the same entries thousands of times.
        """
        self._require_client()
        key = (channel, options)
        reads = self._history_reads.get(key)
        if reads is None:
            reads = self._history_reads[key] = _HistoryReads()
            if len(self._history_reads) == 1:
                asyncio.get_running_loop().call_soon(self._read_histories)
        future: asyncio.Future[History] = asyncio.get_running_loop().create_future()
        reads.wants.append((max(0, since_seq), max(0, limit), future))
        return await future

    def _read_histories(self) -> None:
        """Send this iteration's history reads: per channel, one script call per run of
        overlapping wanted ranges (ranges far apart are not merged, so no read grows past what
        the separate reads would have fetched together)."""
        groups, self._history_reads = self._history_reads, {}
        for (channel, options), reads in groups.items():
            wants = sorted((w for w in reads.wants if not w[2].done()), key=lambda w: w[0])
            run: list[_Want] = []
            end = -1
            for want in wants:
                start = want[0]
                if end >= 0 and want[1] and start > end:  # a gap: this range starts a new read
                    self._read_run(channel, options, run, end)
                    run, end = [], -1
                run.append(want)
                if want[1]:
                    end = max(end, start + want[1])
            if run:
                self._read_run(channel, options, run, end)

    def _read_run(self, channel: str, options: ChannelOptions, wants: list[_Want], end: int) -> None:
        """One script call for ``wants`` (sorted by ``since_seq``); each gets its own slice.

        A want with ``limit`` 0 (a fresh subscribe: position only) neither lowers the start nor
        raises the count of the read it joins.
        """
        reading = [w for w in wants if w[1]]
        since = reading[0][0] if reading else 0
        count = end - since if reading else 0
        keep = kept_messages(options)
        keys = [self._key(channel, "seq"), self._key(channel, "epoch"), self._key(channel, "stream")]
        args = [_now_epoch(), since, count, keep, self._state_ttl_ms(options)]
        try:
            reply = self._script("history", keys, args)
        except Exception as exc:  # not started or closed: BrokerUnavailable; never a reader left waiting
            for want in wants:
                _fail(want[2], exc)
            return

        def answer(done: asyncio.Future[Any]) -> None:
            if done.cancelled():
                for want in wants:
                    want[2].cancel()
                return
            exc = done.exception()
            if exc is not None:
                for want in wants:
                    _fail(want[2], exc)
                return
            try:
                self._answer(channel, options, keep, done.result(), wants)
            except Exception as error:  # a malformed reply: every reader of it sees the error
                for want in wants:
                    _fail(want[2], error)

        cast("asyncio.Future[Any]", reply).add_done_callback(answer)

    def _answer(
        self, channel: str, options: ChannelOptions, keep: int, reply: Any, wants: list[_Want]
    ) -> None:
        last_b, epoch_b, now, entries = reply
        epoch, last = epoch_b.decode(), int(last_b)
        cutoff = now - options.history_ttl_s * 1000 if options.history_ttl_s else None
        # Decoded once for every reader of this read (messages are never mutated after this).
        seqs: list[int] = []
        messages: list[Message] = []
        for entry_id, flat in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            seq = int(entry_id.split(b"-", 1)[0])
            seqs.append(seq)
            messages.append(_decode_body(channel, seq, int(fields[b"t"]), fields[b"b"], epoch))
        # A subscribing server answers its client with this position: the gate must hold it too.
        self._gate.anchor(channel, epoch, last)
        for since_seq, limit, future in wants:
            if future.done():
                continue
            first = bisect.bisect_right(seqs, since_seq)
            mine = messages[first : first + limit] if limit else []
            if cutoff is not None:
                mine = [m for m in mine if m.ts >= cutoff]
            if since_seq == last:
                recovered = True
            elif since_seq > last or keep == 0:
                recovered = False
            else:
                recovered = bool(mine) and mine[0].seq == since_seq + 1
            future.set_result(History(messages=mine, epoch=epoch, last_seq=last, recovered=recovered))

    # -- presence ----------------------------------------------------------------------------

    async def presence_join(self, channel: str, user: str, conn_id: str) -> bool:
        self._local_members.setdefault(channel, {})[conn_id] = user
        args = [self._member(conn_id), user, self._presence_ttl_ms]
        first = await self._presence("join", channel, args)
        return bool(first)

    async def presence_leave(self, channel: str, user: str, conn_id: str) -> bool:
        members = self._local_members.get(channel)
        if members is not None:
            members.pop(conn_id, None)
            if not members:
                del self._local_members[channel]
        args = [self._member(conn_id), user]
        last = await self._presence("leave", channel, args)
        return bool(last)

    async def presence_members(self, channel: str) -> list[PresenceMember]:
        flat = await self._presence("members", channel, [])
        pairs = zip(flat[::2], flat[1::2], strict=True)
        members = [PresenceMember(user.decode(), int(count)) for user, count in pairs if int(count) > 0]
        return sorted(members, key=lambda m: m.user)

    # -- internals ---------------------------------------------------------------------------

    def _state_ttl_ms(self, options: ChannelOptions) -> int:
        """TTL of a channel's counter and epoch: never shorter than its kept messages live.

        History kept with no time limit pins the counter (0): replay must keep finding it.
        """
        if self._channel_ttl_ms == 0 or (kept_messages(options) > 0 and options.history_ttl_s == 0):
            return 0
        return max(self._channel_ttl_ms, options.history_ttl_s * 1000)

    def _key(self, channel: str, kind: str) -> str:
        return f"{self._prefix}:{{{channel}}}:{kind}"

    def _pubsub_key(self, channel: str) -> str:
        return f"{self._prefix}:msg:{channel}"

    def _presence_keys(self, channel: str) -> list[str]:
        return [self._key(channel, "pconn"), self._key(channel, "pexp"), self._key(channel, "pusers")]

    def _member(self, conn_id: str) -> str:
        return f"{self._instance}/{conn_id}"


    def _redacted_url(self) -> str:
        _, sep, tail = self._url.rpartition("@")
        return f"{self._url.split('://', 1)[0]}://***@{tail}" if sep else self._url

    def _require_client(self) -> aioredis.Redis:
        if self._client is None or self._closed:
            raise BrokerUnavailable("redis broker is not started")
        return self._client

    async def ping(self) -> None:
        """One round trip on the health connection, within the operation deadline."""
        health = self._health
        if health is None or self._closed:
            raise BrokerUnavailable("redis broker is not started")
        try:
            async with asyncio.timeout(self._op_timeout_s):
                await health.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(f"redis health check: {exc!r}") from exc

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        """Run script ``name`` in this iteration's pipeline (see :class:`AutoPipeline`)."""
        script = self._scripts[name]
        return self._require_pipeline().call(("EVALSHA", script.sha, len(keys), *keys, *args), script.script)

    def _command(self, *args: Any) -> Awaitable[Any]:
        """Send one command in this iteration's pipeline (see :class:`AutoPipeline`)."""
        return self._require_pipeline().call(args)

    def _require_pipeline(self) -> AutoPipeline:
        if self._pipeline is None or self._closed:
            raise BrokerUnavailable("redis broker is not started")
        return self._pipeline

    @property
    def round_trips(self) -> int:
        """Pipelines sent for commands so far (pub/sub and health checks not counted)."""
        return 0 if self._pipeline is None else self._pipeline.round_trips

    @property
    def commands(self) -> int:
        """Commands sent through the pipelines so far."""
        return 0 if self._pipeline is None else self._pipeline.commands

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        self._require_client()
        try:
            return await op()
        except RedisConnectionError as exc:
            if "No connection available" in str(exc):  # BlockingConnectionPool's wait timed out
                raise BrokerBusy(f"redis: all {self._pool_size} connections busy") from exc
            raise BrokerUnavailable(f"redis: {exc}") from exc
        except (RedisError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(f"redis: {exc}") from exc

    async def _read_forever(self) -> None:
        delay = 0.05
        while not self._closed:
            pubsub: PubSub | None = None
            try:
                client = self._require_client()
                # Subscribe confirmations come through: subscribe() waits for them.
                pubsub = client.pubsub(ignore_subscribe_messages=False)
                # A control channel keeps the connection (and thus health) alive with no interest.
                await pubsub.subscribe(f"{self._prefix}:ctl", *map(self._pubsub_key, self._gate.tracked()))
                self._pubsub = pubsub
                await self._refill(self._gate.tracked())
                self._connected.set()
                delay = 0.05
                log.info("redis broker connected (%s)", self._redacted_url())
                while not self._closed:
                    raw = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                    if raw is None:
                        await pubsub.ping()
                        continue
                    kind = raw.get("type")
                    if kind == "message":
                        await self._receive(raw["channel"], raw["data"])
                    elif kind == "subscribe":
                        confirmation = self._confirmations.get(raw["channel"])
                        if confirmation is not None and not confirmation.done():
                            confirmation.set_result(None)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError, BrokerUnavailable) as exc:
                if self._connected.is_set():
                    log.warning("redis broker disconnected: %s", exc)
                self._connected.clear()
            finally:
                self._pubsub = None
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await cast(Any, pubsub).aclose()  # untyped in redis-py
            if not self._closed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._reconnect_max_s)

    async def _receive(self, pubsub_channel: bytes, data: bytes) -> None:
        channel = pubsub_channel.decode()[len(self._prefix) + len(":msg:") :]
        seq_s, ts_s, epoch, body = data.split(b":", 3)
        message = _decode_body(channel, int(seq_s), int(ts_s), body, epoch.decode() or None)
        if message.seq == 0:
            if self._gate.is_tracked(channel):
                self._deliver([message])
            return
        self._deliver(self._gate.offer(message, message.epoch))
        if self._gate.gap(channel) is not None:
            await self._refill([channel])

    async def _refill(self, channels: list[str]) -> None:
        """Fetch what pub/sub missed (reconnect, gap) from the streams; give up visibly if trimmed.

        A failed read raises :class:`BrokerUnavailable` into the reader loop, which reconnects and
        refills every tracked channel again: a gap is never given up because Redis was unreachable.
        """
        for channel in channels:
            epoch, last = self._gate.position(channel)
            if last is None:
                continue
            history = await self.history(channel, last, ChannelOptions(durable=True))
            if epoch is not None and history.epoch != epoch:
                self._gate.reset(channel, history.epoch, 0)
                history = await self.history(channel, 0, ChannelOptions(durable=True))
            for message in history.messages:
                self._deliver(self._gate.offer(message, history.epoch))
            # What is still missing is gone from the stream (trimmed, expired, never kept).
            self._deliver(self._gate.give_up(channel, int(time.time() * 1000)))

    def _deliver(self, messages: list[Message]) -> None:
        if self._on_message is None:
            return
        for message in messages:
            try:
                self._on_message(message)
            except Exception:
                log.exception("on_message failed for %s seq %s", message.channel, message.seq)

    async def _refresh_presence_forever(self) -> None:
        interval = self._presence_ttl_ms / 3000
        while not self._closed:
            await asyncio.sleep(interval)
            try:
                for channel, members in list(self._local_members.items()):
                    await self._refresh_members(channel, dict(members))
            except BrokerUnavailable:
                continue

    async def _refresh_members(self, channel: str, members: dict[str, str]) -> None:
        args: list[Any] = [self._presence_ttl_ms]
        for conn_id, user in members.items():
            args += [self._member(conn_id), user]
        await self._presence("refresh", channel, args)

    async def _presence(self, script: str, channel: str, args: list[Any]) -> Any:
        """Run a presence script; announce the leave of members it found expired (crashed instance)."""
        keys = self._presence_keys(channel)
        result, gone = await self._call(lambda: self._script(script, keys, args))
        for user in gone:
            # Best effort like every announce: presence itself is already correct in Redis.
            with contextlib.suppress(BrokerUnavailable):
                await self.announce(channel, {"presence": "leave", "user": user.decode()})
        return result

    async def _forget_local_members(self) -> None:
        for channel, members in list(self._local_members.items()):
            for conn_id, user in list(members.items()):
                await self._scripts["leave"](
                    keys=self._presence_keys(channel), args=[self._member(conn_id), user]
                )
        self._local_members.clear()
