"""The in-memory broker: one process, no dependencies. A documented twin of the real brokers.

It keeps exactly what :class:`~.base.Broker` promises (per-channel ``seq``, bounded history with a
TTL, an idempotency window for ``msg_id``, presence counts) inside this process, so a single
instance needs no Redis and the broker contract suite runs it like any other backend. History
does not survive a restart: ``epoch`` is random per process, which makes clients resync.

Channel names come from clients, so what a channel keeps is bounded three ways: history TTL and
size are enforced when a message is written (not only when history is read); a channel with no
subscriber, no presence and no publish for ``channel_idle_s`` is forgotten by a sweep that runs
every ``channel_idle_s / 2``; and a publish that would create a channel past ``max_channels`` in
total, or past ``max_channels_per_user`` created by the same sender (anonymous publishers only
count in the total), raises :class:`~.base.ChannelLimitReached`. A forgotten channel that comes
back starts at ``seq`` 1 under a new epoch (``<epoch>.<n>``), so its subscribers resync.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Final

from .base import ChannelLimitReached, ChannelOptions, History, Message, OnMessage, PresenceMember, PublishResult

MAX_IDEMPOTENCY_KEYS: Final = 100_000
"""Per channel; bounds memory when clients send a fresh msg_id with every publish."""


class MemoryBroker:
    """:class:`~.base.Broker` for one process. ``clock`` returns seconds since the epoch."""

    def __init__(
        self,
        *,
        idempotency_window_s: float = 120.0,
        clock: Callable[[], float] = time.time,
        max_channels: int = 100_000,
        max_channels_per_user: int = 1000,
        channel_idle_s: float = 300.0,
    ) -> None:
        self.epoch = secrets.token_hex(8)
        self.clock = clock
        """Decides every message's ``ts`` and the history TTL; public so that a caller holding a
        fresh reading of this same clock can hand it to :meth:`publish_now`."""
        self._window = idempotency_window_s
        self._on_message: OnMessage | None = None
        self._subscribed: set[str] = set()
        self._seq: dict[str, int] = {}
        self._history: dict[str, deque[Message]] = {}
        self._seen: dict[str, OrderedDict[str, tuple[float, Message]]] = {}
        self._presence: dict[str, dict[str, set[str]]] = {}
        self._max_channels = max_channels
        self._max_per_user = max_channels_per_user
        self._idle_s = channel_idle_s
        self._touched: dict[str, float] = {}
        """Channel -> last publish (``clock`` seconds); its keys are the channels kept."""
        self._creator: dict[str, str] = {}
        """Channel -> the user whose publish created it (anonymous creators are not recorded)."""
        self._created: dict[str, int] = {}
        """User -> channels kept that their publishes created."""
        self._reborn: dict[str, str] = {}
        """Channel -> its epoch, for channels created after a sweep forgot some (else :attr:`epoch`)."""
        self._generation = 0
        self._swept_at = float("-inf")
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def healthy(self) -> bool:
        return True

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self._schedule_sweep()

    async def aclose(self) -> None:
        self._on_message = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    @property
    def channels(self) -> int:
        """Channels kept (each holds a seq, maybe history and idempotency keys)."""
        return len(self._touched)

    def _schedule_sweep(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(max(self._idle_s / 2, 0.05), self._sweep_tick)

    def _sweep_tick(self) -> None:
        self.evict_idle()
        self._schedule_sweep()

    def evict_idle(self, now: float | None = None) -> int:
        """Forget every channel idle for ``channel_idle_s`` (no subscriber, no presence, no
        publish); returns how many. Runs on a timer; also before refusing a new channel at the cap."""
        if now is None:
            now = self.clock()
        self._swept_at = now
        cutoff = now - self._idle_s
        idle = [
            channel
            for channel, touched in self._touched.items()
            if touched <= cutoff and channel not in self._subscribed and channel not in self._presence
        ]
        if idle:
            self._generation += 1
        for channel in idle:
            del self._touched[channel]
            self._seq.pop(channel, None)
            self._history.pop(channel, None)
            self._seen.pop(channel, None)
            self._reborn.pop(channel, None)
            creator = self._creator.pop(channel, None)
            if creator is not None:
                left = self._created[creator] - 1
                if left:
                    self._created[creator] = left
                else:
                    del self._created[creator]
        return len(idle)

    def _epoch_of(self, channel: str) -> str:
        reborn = self._reborn.get(channel)
        if reborn is not None:
            return reborn
        # Kept since before the first sweep: the process epoch; not kept: the one it will get.
        return self.epoch if channel in self._touched else f"{self.epoch}.{self._generation}"

    def _create(self, channel: str, sender: str | None, now: float) -> None:
        """Admit a new channel (its first publish) or raise :class:`ChannelLimitReached`."""
        if len(self._touched) >= self._max_channels and now - self._swept_at >= 1.0:
            self.evict_idle(now)  # at most once a second: a sweep is a pass over every channel
        if len(self._touched) >= self._max_channels:
            raise ChannelLimitReached(f"the server keeps at most {self._max_channels} channels")
        if sender is not None:
            created = self._created.get(sender, 0)
            if created >= self._max_per_user:
                raise ChannelLimitReached(f"at most {self._max_per_user} channels created per user")
            self._created[sender] = created + 1
            self._creator[channel] = sender
        if self._generation:
            self._reborn[channel] = f"{self.epoch}.{self._generation}"

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    def _deliver(self, message: Message) -> None:
        if self._on_message is not None and message.channel in self._subscribed:
            self._on_message(message)

    async def publish(
        self,
        channel: str,
        payload: Any,
        options: ChannelOptions,
        *,
        sender: str | None = None,
        msg_id: str | None = None,
    ) -> PublishResult:
        return self.publish_now(channel, payload, options, sender=sender, msg_id=msg_id)

    def publish_now(
        self,
        channel: str,
        payload: Any,
        options: ChannelOptions,
        sender: str | None = None,
        msg_id: str | None = None,
        now: float | None = None,
    ) -> PublishResult:
        """:meth:`publish` without the coroutine: the server calls this inside a frame callback,
        where creating and stepping a coroutine would be a good part of a request's cost. Its
        arguments may be positional (cheaper than keywords on the per-request path).

        ``now``: a reading of :attr:`clock` the caller just took (the server's, when both use the
        same clock), saving a second read per request; None reads the clock here.
        """
        if now is None:
            now = self.clock()
        touched = self._touched
        if channel not in touched:
            self._create(channel, sender, now)
        touched[channel] = now
        if msg_id is not None:
            seen = self._seen.setdefault(channel, OrderedDict())
            while seen and (next(iter(seen.values()))[0] <= now - self._window or len(seen) > MAX_IDEMPOTENCY_KEYS):
                seen.popitem(last=False)
            previous = seen.get(msg_id)
            if previous is not None:
                return PublishResult(previous[1], duplicate=True)
        seq = self._seq.get(channel, 0) + 1
        self._seq[channel] = seq
        epoch = self._reborn.get(channel, self.epoch) if self._generation else self.epoch
        ts = int(now * 1000)
        message = Message(channel, seq, ts, payload, sender, msg_id, epoch)
        if options.history_size > 0:
            kept = self._history.get(channel)
            if kept is None or kept.maxlen != options.history_size:
                kept = deque(kept or (), maxlen=options.history_size)
                self._history[channel] = kept
            elif options.history_ttl_s > 0:  # the TTL holds on write too: expired messages go now
                oldest_ms = ts - options.history_ttl_s * 1000
                while kept and kept[0].ts < oldest_ms:
                    kept.popleft()
            kept.append(message)
        if msg_id is not None and self._window > 0:
            self._seen[channel][msg_id] = (now, message)
        if self._on_message is not None and channel in self._subscribed:  # _deliver(), inlined
            self._on_message(message)
        return PublishResult(message)

    async def announce(self, channel: str, payload: Any) -> None:
        self._deliver(Message(channel, 0, int(self.clock() * 1000), payload))

    def _expire(self, channel: str, options: ChannelOptions) -> deque[Message] | None:
        kept = self._history.get(channel)
        if kept is not None and options.history_ttl_s > 0:
            oldest_ms = int((self.clock() - options.history_ttl_s) * 1000)
            while kept and kept[0].ts < oldest_ms:
                kept.popleft()
        return kept

    async def history(
        self, channel: str, since_seq: int, options: ChannelOptions, *, limit: int = 1000
    ) -> History:
        epoch = self._epoch_of(channel) if self._generation else self.epoch
        last_seq = self._seq.get(channel, 0)
        kept = self._expire(channel, options) or deque()
        first_kept = kept[0].seq if kept else last_seq + 1
        # Recovered means nothing after since_seq was lost: the next message we still hold (or
        # the next one to be published) directly follows what the client has.
        recovered = since_seq <= last_seq and since_seq + 1 >= first_kept
        messages: list[Message] = []
        if limit > 0:
            for message in kept:
                if message.seq > since_seq:
                    messages.append(message)
                    if len(messages) >= limit:
                        break
        return History(messages, epoch, last_seq, recovered)

    async def presence_join(self, channel: str, user: str, conn_id: str) -> bool:
        users = self._presence.setdefault(channel, {})
        connections = users.setdefault(user, set())
        first = not connections
        connections.add(conn_id)
        return first

    async def presence_leave(self, channel: str, user: str, conn_id: str) -> bool:
        users = self._presence.get(channel)
        if users is None or conn_id not in users.get(user, ()):
            return False
        users[user].discard(conn_id)
        if users[user]:
            return False
        del users[user]
        if not users:
            del self._presence[channel]
        return True

    async def presence_members(self, channel: str) -> list[PresenceMember]:
        users = self._presence.get(channel, {})
        return [PresenceMember(user, len(conns)) for user, conns in sorted(users.items())]
