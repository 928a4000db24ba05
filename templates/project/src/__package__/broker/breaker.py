"""Circuit breaker around a scale-out broker: fail fast, degrade visibly, recover by itself.

States (:class:`CircuitState`): ``CLOSED`` passes calls through and counts consecutive
:class:`BrokerUnavailable`; after ``failure_threshold`` of them the circuit is ``OPEN`` and calls do
not touch the backend (no pile-up of timeouts while Redis is down). After ``reset_timeout_s`` it is
``HALF_OPEN``: up to ``half_open_max_calls`` probes go through, one success closes it, one failure
opens it again.

An active health check runs in the background every ``health_interval_s``: one round trip to
the backend (the adapter's ``ping``, bounded by its operation deadline). Its outcome feeds the
circuit like any call, so an idle server notices a hung broker (SIGSTOP, a full network buffer)
and recovers when it answers again; ``healthy`` is False until the latest check succeeded.
Running out of pooled connections (:class:`BrokerBusy`) is not a backend failure and is never
counted.

While the circuit is not closed:

* publishing to a channel that keeps history (durable or ``history_size > 0``) raises
  :class:`BrokerUnavailable`: the server answers ``broker_unavailable`` and the client retries with
  its ``msg_id``. Accepting it locally would fork the channel's sequence and history.
* publishing to a channel without history is delivered to this instance's subscribers only.
  Its ``seq`` continues the local sequence; once the broker is back, this instance shifts the
  channel's broker sequence by the number of local-only messages, so its clients never see a
  ``seq`` go backwards (which they would drop as duplicates). Such channels are never resumed from
  history, so per-instance numbering is safe.
* presence is answered from this instance's members; on recovery every local member is joined
  again (idempotent) and departures seen meanwhile are replayed, then every channel of interest
  is subscribed again.
* ``healthy`` is False, so ``/readyz`` reports degraded (also while the latest health check failed).

:class:`CircuitBreaker` is the state machine alone, with the clock passed in (no I/O).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .base import (
    Broker,
    BrokerBusy,
    BrokerUnavailable,
    ChannelOptions,
    History,
    Message,
    OnMessage,
    PresenceMember,
    PublishResult,
)
from .ordering import LOST_THROUGH

log = logging.getLogger(__name__)

T = TypeVar("T")


class CircuitState(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> half-open after a timeout -> closed."""

    def __init__(self, failure_threshold: int, reset_timeout_s: float, half_open_max_calls: int = 1) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.half_open_max_calls = half_open_max_calls
        self.state = CircuitState.CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probes = 0

    def allow(self, now: float) -> bool:
        """May a call go to the backend now? Counts half-open probes."""
        if self.state is CircuitState.OPEN and now - self._opened_at >= self.reset_timeout_s:
            self.state, self._probes = CircuitState.HALF_OPEN, 0
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.HALF_OPEN and self._probes < self.half_open_max_calls:
            self._probes += 1
            return True
        return False

    def record_success(self) -> bool:
        """Returns True when this success closed an open or half-open circuit."""
        reopened = self.state is not CircuitState.CLOSED
        self.state, self.failures = CircuitState.CLOSED, 0
        return reopened

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.state is CircuitState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state, self._opened_at = CircuitState.OPEN, now


def _keeps_history(options: ChannelOptions) -> bool:
    return options.durable or options.history_size > 0


class BreakerBroker:
    """A :class:`~.base.Broker` that wraps another one with a :class:`CircuitBreaker`.

    Args:
        inner: the scale-out broker. Its ``start`` may raise :class:`BrokerUnavailable` and must
            keep reconnecting in the background after that (Redis and NATS adapters do).
        clock: monotonic seconds; tests pass a fake one.
    """

    def __init__(
        self,
        inner: Broker,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 5.0,
        half_open_max_calls: int = 1,
        health_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.health_interval_s = health_interval_s
        self._health_ok = True
        """Outcome of the latest health check (True until the first one ran)."""
        self.circuit = CircuitBreaker(failure_threshold, reset_timeout_s, half_open_max_calls)
        self._clock = clock
        self._on_message: OnMessage | None = None
        self._interest: set[str] = set()
        self._last_seq: dict[str, int] = {}
        self._offset: dict[str, int] = {}
        """Local-only messages per channel, added to the broker's ``seq`` (see module docstring)."""
        self._keeps: dict[str, bool] = {}
        """Whether a channel keeps history, as learnt from the options of publish/history calls."""
        self._members: dict[str, dict[str, str]] = {}
        self._pending_leaves: dict[str, dict[str, str]] = {}
        self._probe_task: asyncio.Task[None] | None = None
        self._recovering = asyncio.Lock()
        self._closed = False

    @property
    def healthy(self) -> bool:
        return self.circuit.state is CircuitState.CLOSED and self.inner.healthy and self._health_ok

    @property
    def state(self) -> CircuitState:
        return self.circuit.state

    async def start(self, on_message: OnMessage) -> None:
        """Start the inner broker; if it is down, start degraded and keep probing."""
        self._on_message = on_message
        self._probe_task = asyncio.create_task(self._check_health_forever(), name="broker-health")
        try:
            await self.inner.start(self._receive)
        except BrokerUnavailable as exc:
            log.warning("broker unavailable at start, running degraded: %s", exc)
            self._fail()
            self.circuit.state = CircuitState.OPEN

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
        await self.inner.aclose()

    async def subscribe(self, channel: str) -> None:
        self._interest.add(channel)
        if self.circuit.state is CircuitState.CLOSED:
            with contextlib.suppress(BrokerUnavailable):
                await self._guarded(self.inner.subscribe(channel))

    async def unsubscribe(self, channel: str) -> None:
        self._interest.discard(channel)
        self._offset.pop(channel, None)
        self._last_seq.pop(channel, None)
        self._keeps.pop(channel, None)
        if self.circuit.state is CircuitState.CLOSED:
            with contextlib.suppress(BrokerUnavailable):
                await self._guarded(self.inner.unsubscribe(channel))

    async def publish(
        self,
        channel: str,
        payload: Any,
        options: ChannelOptions,
        *,
        sender: str | None = None,
        msg_id: str | None = None,
    ) -> PublishResult:
        self._learn(channel, options)
        if self._allow():
            try:
                result = await self._guarded(
                    self.inner.publish(channel, payload, options, sender=sender, msg_id=msg_id)
                )
            except BrokerUnavailable:
                if _keeps_history(options):
                    raise
            else:
                shifted = self._shift(result.message)
                return PublishResult(shifted, duplicate=result.duplicate, extra=result.extra)
        if _keeps_history(options):
            raise BrokerUnavailable(f"broker circuit open; {channel} keeps history")
        seq = self._last_seq.get(channel, 0) + 1
        # No epoch: the broker's numbering of this channel is unknown here, and a local message
        # must not make subscribers resync.
        message = Message(channel, seq, int(time.time() * 1000), payload, sender, msg_id)
        if channel in self._interest:
            self._offset[channel] = self._offset.get(channel, 0) + 1
            self._note(message)
            self._deliver(message)
        return PublishResult(message, extra={"degraded": True})

    async def announce(self, channel: str, payload: Any) -> None:
        if self._allow():
            try:
                await self._guarded(self.inner.announce(channel, payload))
                return
            except BrokerUnavailable:
                pass
        if channel in self._interest:
            self._deliver(Message(channel, 0, int(time.time() * 1000), payload))

    async def history(
        self, channel: str, since_seq: int, options: ChannelOptions, *, limit: int = 1000
    ) -> History:
        self._learn(channel, options)
        if not self._allow():
            raise BrokerUnavailable("broker circuit open")
        offset = self._offset.get(channel, 0)
        history = await self._guarded(
            self.inner.history(channel, max(0, since_seq - offset), options, limit=limit)
        )
        if offset:
            history = History(
                messages=[self._shift(m) for m in history.messages],
                epoch=history.epoch,
                last_seq=history.last_seq + offset,
                recovered=history.recovered,
            )
        return history

    async def presence_join(self, channel: str, user: str, conn_id: str) -> bool:
        local_first = user not in self._members.get(channel, {}).values()
        self._members.setdefault(channel, {})[conn_id] = user
        self._pending_leaves.get(channel, {}).pop(conn_id, None)
        if self._allow():
            with contextlib.suppress(BrokerUnavailable):
                return await self._guarded(self.inner.presence_join(channel, user, conn_id))
        return local_first

    async def presence_leave(self, channel: str, user: str, conn_id: str) -> bool:
        members = self._members.get(channel, {})
        members.pop(conn_id, None)
        if not members:
            self._members.pop(channel, None)
        if self._allow():
            with contextlib.suppress(BrokerUnavailable):
                return await self._guarded(self.inner.presence_leave(channel, user, conn_id))
        self._pending_leaves.setdefault(channel, {})[conn_id] = user
        return user not in members.values()

    async def presence_members(self, channel: str) -> list[PresenceMember]:
        if self._allow():
            with contextlib.suppress(BrokerUnavailable):
                return await self._guarded(self.inner.presence_members(channel))
        counts: dict[str, int] = {}
        for user in self._members.get(channel, {}).values():
            counts[user] = counts.get(user, 0) + 1
        return [PresenceMember(user, n) for user, n in sorted(counts.items())]

    # -- internals ---------------------------------------------------------------------------

    def _allow(self) -> bool:
        return not self._closed and self.circuit.allow(self._clock())

    async def _guarded(self, call: Awaitable[T]) -> T:
        """Await one backend call, feeding the outcome to the circuit."""
        try:
            result = await call
        except BrokerBusy:
            raise  # our own pool is exhausted; the backend answered everything it was asked
        except BrokerUnavailable:
            self._fail()
            raise
        if self.circuit.record_success():
            await self._recover()
        return result

    def _fail(self) -> None:
        was = self.circuit.state
        self.circuit.record_failure(self._clock())
        if was is not CircuitState.OPEN and self.circuit.state is CircuitState.OPEN:
            log.warning("broker circuit opened after %d failure(s)", self.circuit.failures)

    async def _recover(self) -> None:
        """Re-establish what the backend forgot or never saw while the circuit was open."""
        async with self._recovering:
            log.info("broker circuit closed; resubscribing %d channel(s)", len(self._interest))
            try:
                for channel in sorted(self._interest):
                    await self.inner.subscribe(channel)
                for channel, leaves in list(self._pending_leaves.items()):
                    for conn_id, user in list(leaves.items()):
                        await self.inner.presence_leave(channel, user, conn_id)
                        del leaves[conn_id]
                    self._pending_leaves.pop(channel, None)
                for channel, members in list(self._members.items()):
                    for conn_id, user in list(members.items()):
                        await self.inner.presence_join(channel, user, conn_id)
            except BrokerUnavailable:
                self._fail()

    async def _check_health_forever(self) -> None:
        """Round-trip to the backend every ``health_interval_s`` (and sooner while the circuit is
        open, so that a recovered broker is noticed within a fraction of the reset timeout)."""
        ping = getattr(self.inner, "ping", None)
        while not self._closed:
            interval = self.health_interval_s
            if self.circuit.state is not CircuitState.CLOSED:
                interval = min(interval, max(self.circuit.reset_timeout_s / 4, 0.01))
            await asyncio.sleep(interval)
            if not self.inner.healthy:
                self._health_ok = False  # disconnected: the adapter is reconnecting by itself
                continue
            if not self.circuit.allow(self._clock()):
                continue
            try:
                if ping is not None:
                    await self._guarded(ping())
                else:
                    await self._guarded(self.inner.presence_members(_PROBE_CHANNEL))
            except BrokerUnavailable as exc:
                if self._health_ok:
                    log.warning("broker health check failed: %s", exc)
                self._health_ok = False
            else:
                if not self._health_ok:
                    log.info("broker health check passed again")
                self._health_ok = True

    def _learn(self, channel: str, options: ChannelOptions) -> None:
        if channel in self._interest:
            self._keeps[channel] = _keeps_history(options)

    def _shift(self, message: Message) -> Message:
        offset = self._offset.get(message.channel, 0)
        if not offset:
            return message
        if message.seq == 0:
            lost = message.payload.get(LOST_THROUGH) if isinstance(message.payload, dict) else None
            if isinstance(lost, int):  # a lost notice names a broker seq: shift it like the messages
                return dataclasses.replace(message, payload={LOST_THROUGH: lost + offset})
            return message
        return dataclasses.replace(message, seq=message.seq + offset)

    def _note(self, message: Message) -> None:
        """Remember the highest ``seq`` of channels with local interest (where local ``seq`` starts)."""
        if message.channel in self._interest and message.seq > self._last_seq.get(message.channel, 0):
            self._last_seq[message.channel] = message.seq

    def _receive(self, message: Message) -> None:
        shifted = self._shift(message)
        channel = message.channel
        last = self._last_seq.get(channel, 0)
        if message.seq and shifted.seq <= last and self._keeps.get(channel) is False:
            # The backend lost the channel's counter (e.g. Redis restarted empty) and numbers it
            # from 1 again; keep this instance's numbering increasing instead of feeding clients
            # "duplicates" they would drop.
            self._offset[channel] = last - message.seq + 1
            shifted = self._shift(message)
        self._note(shifted)
        self._deliver(shifted)

    def _deliver(self, message: Message) -> None:
        if self._on_message is not None:
            self._on_message(message)


_PROBE_CHANNEL = "__wsforge_probe__"
"""Presence of this channel is read as a cheap round trip that proves the backend answers."""
