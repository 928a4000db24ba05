"""The bounded outbound queue of one connection, with per-namespace backpressure. No I/O.

Replies to the connection's own requests are never dropped. Events are, when the queue is full,
according to the event's namespace policy:

* ``drop_oldest`` - drop the oldest queued event (the newest data wins);
* ``coalesce`` - drop the oldest queued event *of the same channel*, so each channel keeps its
  newest value (tickers, positions); falls back to ``drop_oldest`` when there is none;
* ``disconnect`` - give up on the consumer: the server closes it with 4009 and the client resumes
  from history, which beats silently losing messages on a durable channel.

The queue holds the very ``bytes`` object fan-out encoded once; nothing is copied per connection.
"""

from __future__ import annotations

import enum
from collections import deque

from .channels import Backpressure


class Overflow(enum.Enum):
    """What :meth:`Outbox.push_event` did."""

    NONE = "none"
    DROPPED_OLDEST = "drop_oldest"
    COALESCED = "coalesce"
    SLOW_CONSUMER = "slow_consumer"
    """The server must close the connection with 4009."""


_NOTHING_YET: deque[tuple[str | None, bytes]] = deque(maxlen=0)
"""Shared by every outbox that never queued anything: an empty deque costs 760 bytes, and most
connections of a big idle fleet never need their own (bench idle row)."""


class Outbox:
    """FIFO of ``(channel or None, data)``; ``None`` marks replies, which are never dropped."""

    __slots__ = ("_items", "capacity", "reply_capacity")

    def __init__(self, capacity: int) -> None:
        self._items: deque[tuple[str | None, bytes]] = _NOTHING_YET
        self.capacity = capacity
        self.reply_capacity = capacity * 2
        """Replies may overshoot the event bound, but a client that never reads still gets cut off."""

    def __len__(self) -> int:
        return len(self._items)

    def pop(self) -> bytes:
        """The next frame to send. Raises IndexError when empty."""
        return self._items.popleft()[1]

    def clear(self) -> int:
        dropped = len(self._items)
        self._items.clear()
        return dropped

    def push_reply(self, data: bytes) -> Overflow:
        items = self._items
        if len(items) >= self.reply_capacity:
            return Overflow.SLOW_CONSUMER
        if items is _NOTHING_YET:
            items = self._items = deque()
        items.append((None, data))
        return Overflow.NONE

    def push_event(self, channel: str, data: bytes, policy: Backpressure) -> Overflow:
        items = self._items
        if items is _NOTHING_YET:
            items = self._items = deque()
        if len(items) < self.capacity:
            items.append((channel, data))
            return Overflow.NONE
        if policy is Backpressure.DISCONNECT:
            return Overflow.SLOW_CONSUMER
        outcome = Overflow.DROPPED_OLDEST
        index = None
        if policy is Backpressure.COALESCE:
            index = next((i for i, item in enumerate(items) if item[0] == channel), None)
            if index is not None:
                outcome = Overflow.COALESCED
        if index is None:
            index = next((i for i, item in enumerate(items) if item[0] is not None), None)
        if index is None:  # full of replies: the client is not reading at all
            return Overflow.SLOW_CONSUMER
        del items[index]
        items.append((channel, data))
        return outcome
