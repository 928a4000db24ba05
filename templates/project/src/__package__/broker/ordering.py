"""Per-instance delivery gate: each ``seq`` of a channel reaches ``on_message`` once, in order. No I/O.

The scale-out brokers deliver over a lossy, at-least-once path (pub/sub or core subjects that may
drop messages while a connection is re-established, and that may replay some after a refill from
the stored history). The gate sits between that path and the server: it drops what was already
delivered, holds back messages that arrived ahead of a gap, and tells the adapter which range to
fetch from history. A fetch that fails (the broker is reconnecting) is retried by the adapter;
when the range truly cannot be fetched (ephemeral channel, trimmed history, retries exhausted)
the adapter calls :meth:`SequenceGate.give_up`, which hands out a *lost notice* (see
:data:`LOST_THROUGH`) before the held messages, so the server sends its subscribers ``resync``:
a loss is announced, never a silent jump in ``seq``.

An ``epoch`` change (the broker lost its state, e.g. Redis restarted without persistence) resets
the channel: sequence numbers start again from 1 and must not be mistaken for duplicates. The new
epoch's numbering is taken to start at 1, so a first message with a higher ``seq`` opens a gap
that the adapter refills from the new history like any other. Messages keep their ``epoch`` on the
way through, so the server can tell its clients to resync (the gate only orders them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Message

LOST_THROUGH = "lost_through"
"""Key of the payload of a lost notice: an unsequenced :class:`Message` (``seq == 0``) whose payload
is ``{"lost_through": n}`` says that this instance will never deliver the channel's messages up to
``n`` that it has not delivered yet. The server answers it with a ``resync`` (``messages_lost``)."""


@dataclass(slots=True)
class _ChannelState:
    epoch: str | None = None
    last: int | None = None
    """Highest ``seq`` handed out; ``None`` until the first message after subscribing."""
    held: dict[int, Message] = field(default_factory=dict)


class SequenceGate:
    """Deduplicate and order messages per channel; the adapter owns fetching and timers."""

    def __init__(self) -> None:
        self._channels: dict[str, _ChannelState] = {}

    def track(self, channel: str) -> None:
        """Start gating ``channel``; idempotent. Untracked channels' messages are ignored."""
        self._channels.setdefault(channel, _ChannelState())

    def forget(self, channel: str) -> None:
        self._channels.pop(channel, None)

    def tracked(self) -> list[str]:
        return sorted(self._channels)

    def is_tracked(self, channel: str) -> bool:
        return channel in self._channels

    def position(self, channel: str) -> tuple[str | None, int | None]:
        """``(epoch, last delivered seq)`` of a tracked channel, for refilling after a reconnect."""
        state = self._channels.get(channel)
        return (None, None) if state is None else (state.epoch, state.last)

    def anchor(self, channel: str, epoch: str, last: int) -> None:
        """Take ``(epoch, last)`` from a history read as the position of a channel that has had no
        live message yet, so messages published before this instance's live subscription was in
        force (the broker was reconnecting) are refilled, not skipped. No-op once a position exists.
        """
        state = self._channels.get(channel)
        if state is not None and state.last is None:
            state.epoch, state.last = epoch, last

    def offer(self, message: Message, epoch: str | None = None) -> list[Message]:
        """Accept one message from the wire; returns the messages now deliverable, in order."""
        state = self._channels.get(message.channel)
        if state is None:
            return []
        if epoch is not None and state.epoch is not None and epoch != state.epoch:
            state.last = 0
            state.held.clear()
        if epoch is not None:
            state.epoch = epoch
        if state.last is None:
            state.last = message.seq - 1
        if message.seq <= state.last or message.seq in state.held:
            return []
        state.held[message.seq] = message
        return self._drain(state)

    def reset(self, channel: str, epoch: str, last: int) -> None:
        """Declare the position after a refill found the channel in a new ``epoch``."""
        state = self._channels.get(channel)
        if state is not None:
            state.epoch, state.last = epoch, last
            state.held = {s: m for s, m in state.held.items() if s > last}

    def gap(self, channel: str) -> tuple[int, int] | None:
        """The missing range ``(first, last)`` blocking held messages, or ``None``."""
        state = self._channels.get(channel)
        if state is None or not state.held or state.last is None:
            return None
        return state.last + 1, min(state.held) - 1

    def give_up(self, channel: str, ts: int) -> list[Message]:
        """Give up on the current gap: a lost notice (timestamp ``ts``), then what is held.

        Empty when there is no gap. The notice carries the channel's epoch, so a server can tell
        its subscribers where the numbering continues.
        """
        state = self._channels.get(channel)
        if state is None or not state.held:
            return []
        state.last = min(state.held) - 1
        notice = Message(channel, 0, ts, {LOST_THROUGH: state.last}, epoch=state.epoch)
        return [notice, *self._drain(state)]

    @staticmethod
    def _drain(state: _ChannelState) -> list[Message]:
        out: list[Message] = []
        assert state.last is not None
        while (state.last + 1) in state.held:
            state.last += 1
            out.append(state.held.pop(state.last))
        return out
