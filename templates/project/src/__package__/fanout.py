"""Fan-out: delivering broker messages to this instance's subscribers, and batching their writes.

:meth:`Fanout.deliver` is the broker's callback. It encodes an event once per codec and hands
the same ``bytes`` object to every local subscriber's bounded outbox. On transports that write
synchronously (picows) the connections that got events are flushed once per loop iteration
(:meth:`Fanout.mark_dirty`), or, while those flushes find about one event per connection, the
iteration's first message is written to each subscriber at once (:meth:`Fanout.begin_delivery`).
:class:`~.server.Server` composes one; its requests (subscribe, leave) touch only the channel
registry and :attr:`Fanout.followed_epochs`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .broker import Message
from .broker.ordering import LOST_THROUGH
from .channels import ChannelRegistry
from .protocol import Codec

if TYPE_CHECKING:
    from .server import Connection, Server


class Fanout:
    """This instance's channel membership and the delivery of messages to it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.dispatcher = server.dispatcher
        self.separator = server.settings.channel_separator
        self.registry: ChannelRegistry[Connection] = ChannelRegistry()
        self._dirty: list[Connection] = []
        self._flush_scheduled = False
        self._delivering = False
        """A message was delivered in this loop iteration (reset by :meth:`_flush`)."""
        self._eager = True
        """Deliver the iteration's first message by writing at once (see :meth:`begin_delivery`)."""
        self.followed_epochs: dict[str, str] = {}
        """Channel -> broker epoch that every local member's session already follows, so
        :meth:`deliver` skips the per-recipient :meth:`~.dispatch.Session.follow_epoch` check. Set
        after a delivery ran that check on every member; dropped when a subscribe completes on the
        channel (that session's epoch comes from its history read, which may be older) and when
        its last local member leaves."""

    def mark_dirty(self, conn: Connection) -> None:
        """Flush ``conn`` once, after this loop iteration's deliveries: events that arrive
        together leave together, one write per connection."""
        self._dirty.append(conn)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def begin_delivery(self) -> bool:
        """Called once per delivered message: may its subscribers be written at once?

        Only the first delivery of a loop iteration, and only while the last flushes showed no
        coalescing. A publisher at 20 messages/s then gets raw-socket latency (no wait for the
        next iteration), while saturated publishers keep one write per subscriber per
        iteration, which is what multiplies throughput under load.
        """
        if self._delivering:
            return False
        self._delivering = True
        self._schedule_flush()
        return self._eager

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._delivering = False
        dirty, self._dirty = self._dirty, []
        written = 0
        for conn in dirty:
            written += conn.flush()
        if dirty:
            # Coalescing pays when connections got several messages per iteration; when each
            # got about one, writing at delivery time is as cheap and sooner.
            self._eager = written < 1.5 * len(dirty)

    def deliver(self, message: Message) -> None:
        """Broker callback: send ``message`` to every local subscriber of its channel.

        Encodes once per codec in use and shares the bytes across recipients.
        """
        channel = message.channel
        members = self.registry.members(channel)
        if not members:
            control = self.server.control
            if control is not None and control.owns(channel):
                control.receive(message)
            return
        dispatcher = self.dispatcher
        policy = dispatcher.namespaces.get(channel.partition(self.separator)[0])
        if policy is None:
            return
        seq = message.seq
        encoded: dict[Codec, bytes] = {}
        if seq == 0:
            notice = message.payload if isinstance(message.payload, dict) else {}
            lost = notice.get(LOST_THROUGH)
            if isinstance(lost, int):
                # The broker gave up on a gap: announce the loss instead of a silent jump in seq.
                for conn in members:
                    resync = conn.session.lost(channel, lost, message.epoch, message.ts)
                    if resync is not None:
                        conn.push_reply(resync)
                return
            kind = notice.get("presence")
            if kind not in ("join", "leave"):
                return
            action, payload = f"presence.{kind}", {"user": notice.get("user")}
            for conn in members:
                codec = conn.session.codec
                data = encoded.get(codec)
                if data is None:
                    data = encoded[codec] = dispatcher.encode_notice(codec, action, channel, payload, message.ts)
                if conn.session.offer(channel, 0, data):
                    conn.push_event(channel, data, policy)
            return
        epoch = message.epoch
        followed = self.followed_epochs
        if epoch is not None and followed.get(channel) == epoch:
            epoch = None  # every member already follows it: no per-recipient check (see __init__)
        eager = self.begin_delivery()
        last_codec: Codec | None = None
        data = b""
        for conn in members:
            session = conn.session
            if epoch is not None:
                # The broker lost this channel's state: resync (never dropped), then the new seqs.
                resync = session.follow_epoch(channel, epoch, seq, message.ts)
                if resync is not None:
                    conn.push_reply(resync)
            codec = session.codec
            if codec is not last_codec:  # an identity check per recipient; hashing an enum is a Python call
                last_codec = codec
                cached = encoded.get(codec)
                data = encoded[codec] = cached if cached is not None else dispatcher.encode_message(codec, message)
            if not session.offer(channel, seq, data):
                continue
            if not (eager and conn.write_event_now(data)):
                conn.push_event(channel, data, policy)
        if epoch is not None:
            followed[channel] = epoch
