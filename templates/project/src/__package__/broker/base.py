"""The broker seam: how one server instance reaches the others.

The server talks to exactly one :class:`Broker`. The broker, not the server, assigns each
published message its per-channel ``seq`` so that sequence numbers stay consistent when several
instances publish to the same channel. Every instance that has local subscribers for a channel
calls :meth:`Broker.subscribe` once; the broker then hands every message published anywhere on that
channel to the ``on_message`` callback given to :meth:`Broker.start`, exactly once per instance.

Implementations: ``memory.MemoryBroker`` (one process, the default), ``redis.RedisBroker`` and
``nats.NatsBroker`` (scale-out), as far as this project ships them. Backend errors are mapped to
:class:`BrokerUnavailable` at the adapter so that the server never sees a library-specific exception.

A broker may also offer :class:`SyncPublisher`, an optional capability the server looks for once,
when it is built: it then publishes without a coroutine and completes requests inside the
transport's data callback. Any broker without it (a remote one, a test double) takes the plain
``await`` path with the same outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast


class BrokerError(Exception):
    """Root of the broker errors."""


class BrokerUnavailable(BrokerError):
    """The backend cannot be reached; the circuit breaker counts these."""


class BrokerBusy(BrokerUnavailable):
    """This instance has more operations in flight than connections to the backend, and none freed
    up within the operation deadline. The server answers ``broker_unavailable`` like any other
    unavailability, but the circuit breaker does not count it: the backend itself is healthy."""


class ChannelLimitReached(BrokerError):
    """A publish would create a channel past a cap (in total or for its sender); nothing was kept.

    The server answers it with the ``too_many_channels`` error; the circuit breaker ignores it.
    """


# Not frozen: a frozen dataclass pays an object.__setattr__ per field (~0.1 us each) and these
# are built for every request or message. Nothing mutates them after construction. Their own
# ``__init__`` (``init=False``): dataclass's generated one stays interpreted in the mypyc build.
@dataclass(slots=True, init=False)
class Message:
    """One published message, as every instance sees it."""

    channel: str
    seq: int
    ts: int
    """Server time in milliseconds since the epoch when the broker accepted the message."""
    payload: Any
    sender: str | None = None
    msg_id: str | None = None
    epoch: str | None = None
    """The channel's epoch when the message was sequenced (as in :attr:`History.epoch`).

    A live message whose epoch differs from the one a subscriber knows means the broker lost the
    channel's state and numbers it from 1 again: the server sends ``resync`` instead of dropping
    the new, lower ``seq`` values as duplicates. ``None`` on unsequenced notices and on messages
    an instance delivered locally while the broker was down; those never change the epoch.
    """

    def __init__(
        self,
        channel: str,
        seq: int,
        ts: int,
        payload: Any,
        sender: str | None = None,
        msg_id: str | None = None,
        epoch: str | None = None,
    ) -> None:
        self.channel = channel
        self.seq = seq
        self.ts = ts
        self.payload = payload
        self.sender = sender
        self.msg_id = msg_id
        self.epoch = epoch


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """Per-channel storage policy, derived from the channel's namespace."""

    durable: bool = False
    """Durable channels keep history that survives restarts (Redis Streams, JetStream)."""
    history_size: int = 0
    """How many recent messages to keep for replay; 0 means none."""
    history_ttl_s: int = 0
    """How long kept messages live; 0 means no time limit."""


@dataclass(frozen=True, slots=True)
class History:
    """The answer to a replay request."""

    messages: Sequence[Message]
    epoch: str
    """Changes when the channel's history was lost (restart of a memory broker, stream trimmed)."""
    last_seq: int
    recovered: bool
    """False when messages after ``since_seq`` are no longer kept: the client must resync."""


@dataclass(frozen=True, slots=True)
class PresenceMember:
    user: str
    connections: int = 1


@dataclass(slots=True, init=False)
class PublishResult:
    message: Message
    duplicate: bool = False
    """True when ``msg_id`` was seen inside the idempotency window: nothing was delivered again."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __init__(self, message: Message, duplicate: bool = False, extra: dict[str, Any] | None = None) -> None:
        self.message = message
        self.duplicate = duplicate
        self.extra = {} if extra is None else extra


OnMessage = Callable[[Message], None]
"""Called on the event loop for every message of a subscribed channel, in ``seq`` order."""


class Broker(Protocol):
    """What the server needs from a message backend."""

    @property
    def healthy(self) -> bool:
        """False while the backend is unreachable (``/readyz`` reports degraded)."""
        ...

    async def start(self, on_message: OnMessage) -> None:
        """Connect and begin delivering messages of subscribed channels to ``on_message``."""
        ...

    async def aclose(self) -> None:
        """Release connections; idempotent."""
        ...

    async def subscribe(self, channel: str) -> None:
        """Register this instance's interest in ``channel``; idempotent."""
        ...

    async def unsubscribe(self, channel: str) -> None:
        """Drop this instance's interest once its last local member left; idempotent."""
        ...

    async def publish(
        self,
        channel: str,
        payload: Any,
        options: ChannelOptions,
        *,
        sender: str | None = None,
        msg_id: str | None = None,
    ) -> PublishResult:
        """Assign the next ``seq``, store per ``options`` and deliver to every subscribed instance.

        Raises:
            BrokerUnavailable: the backend could not accept the message. Nothing was delivered.
        """
        ...

    async def announce(self, channel: str, payload: Any) -> None:
        """Deliver an unsequenced, unstored notice (presence join/leave) to every subscribed instance.

        It reaches ``on_message`` as a :class:`Message` with ``seq == 0``. Best effort: raises
        :class:`BrokerUnavailable` when the backend is down, and is never replayed. An adapter whose
        presence expires (a crashed instance's members) announces ``{"presence": "leave", "user"}``
        itself for them, from the one instance that purged them (Redis; NATS KV expiry is silent).
        """
        ...

    async def history(
        self, channel: str, since_seq: int, options: ChannelOptions, *, limit: int = 1000
    ) -> History:
        """Messages with ``seq > since_seq`` still kept for ``channel``, oldest first."""
        ...

    async def presence_join(self, channel: str, user: str, conn_id: str) -> bool:
        """Record a member connection; True when this is the user's first connection in the channel."""
        ...

    async def presence_leave(self, channel: str, user: str, conn_id: str) -> bool:
        """Forget a member connection; True when the user has no connection left in the channel."""
        ...

    async def presence_members(self, channel: str) -> list[PresenceMember]:
        """Who is in ``channel`` across every instance."""
        ...


PublishNow = Callable[[str, Any, ChannelOptions, str | None, str | None, float | None], PublishResult]
""":meth:`SyncPublisher.publish_now` as a bound method: the arguments positionally, in order."""


class SyncPublisher(Protocol):
    """Optional capability of a :class:`Broker` that never waits for I/O (the in-process broker).

    Implementing it promises two things the server's fast path relies on:

    * :meth:`publish_now` is :meth:`Broker.publish` without the coroutine (same result, same
      errors), so the most frequent request costs no coroutine creation and stepping;
    * every coroutine method of the broker completes without suspending, so the server may step
      it by hand inside the transport's data callback (``Server.apply_now``) instead of handing
      it to a task.

    The server looks for it once, with :func:`sync_publisher`, when it is built.
    """

    @property
    def clock(self) -> Callable[[], float]:
        """The clock that decides each message's ``ts``: the server passes its own reading to
        :meth:`publish_now` when this is the same clock, saving a second read per request."""
        ...

    def publish_now(
        self,
        channel: str,
        payload: Any,
        options: ChannelOptions,
        sender: str | None = None,
        msg_id: str | None = None,
        now: float | None = None,
    ) -> PublishResult:
        """:meth:`Broker.publish`, returned at once; arguments may be positional (cheaper per call).

        ``now``: a reading of :attr:`clock` the caller just took; None reads the clock here.

        Raises:
            ChannelLimitReached: as :meth:`Broker.publish`.
        """
        ...


def sync_publisher(broker: object) -> SyncPublisher | None:
    """``broker`` as a :class:`SyncPublisher` when it offers the capability, else None.

    An attribute probe rather than ``isinstance`` on a ``runtime_checkable`` Protocol: this module
    is compiled by mypyc, which cannot build such a class, and the probe is what that check does.
    """
    if callable(getattr(broker, "publish_now", None)) and callable(getattr(broker, "clock", None)):
        return cast(SyncPublisher, broker)
    return None
