"""Control messages: how the application's backend acts on users connected to any instance.

The server API and the publisher library do not know which instance holds a user's connections,
so they send one control message to every instance through the broker
(:meth:`~.broker.base.Broker.announce` on :data:`CONTROL_CHANNEL`); each instance applies it to
its own connections of that user. Every server subscribes to the channel when it starts. The
name has no namespace separator rule a client could satisfy, so no client can subscribe to it or
publish on it.

Control messages are best effort like every announce: an instance that is cut off from the broker
misses them (its clients are cut off from every publish too, and resume from history when it
reconnects). Publishes never go through here: they are ordinary broker publishes with ``seq``.

Besides the user operations, instances use the channel to know each other (:class:`NodeHeartbeat`,
:class:`NodeGone`) and to answer the server API's ``channels`` call (:class:`ChannelsQuery`, answered
with a :class:`ChannelsReply` on the asking instance's own :func:`reply_channel`).
:class:`ControlPlane` is the server side of all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .broker.base import BrokerUnavailable, Message
from .channels import InvalidChannel, parse_channel

if TYPE_CHECKING:
    from .server import Server

logger = logging.getLogger(__name__)

CONTROL_CHANNEL: Final = "$control"
HEARTBEAT_S: Final = 5.0
"""How often an instance announces itself; one silent for three beats is taken for gone."""


def reply_channel(node: str) -> str:
    """Where answers to ``node``'s queries go: only that instance subscribes to it."""
    return f"{CONTROL_CHANNEL}.{node}"


@dataclass(frozen=True, slots=True)
class DisconnectUser:
    """Close every connection of ``user`` with ``code`` (4000-4999) and ``reason``."""

    user: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SubscribeUser:
    """Subscribe every connection of ``user`` to ``channel``, as if each had asked (server-side)."""

    user: str
    channel: str


@dataclass(frozen=True, slots=True)
class UnsubscribeUser:
    """Remove ``channel`` from every connection of ``user``."""

    user: str
    channel: str


@dataclass(frozen=True, slots=True)
class NodeHeartbeat:
    """``node`` is alive. ``hello`` on start: the others answer with their own heartbeat, so a new
    instance knows every live one within a round trip instead of a heartbeat interval."""

    node: str
    hello: bool = False


@dataclass(frozen=True, slots=True)
class NodeGone:
    """``node`` stops (clean shutdown): stop waiting for its answers at once."""

    node: str


@dataclass(frozen=True, slots=True)
class ChannelsQuery:
    """Every instance answers with its local subscriber counts of channels matching ``pattern``."""

    node: str
    query: str
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelsReply:
    """``node``'s answer to ``query``: channel -> local subscriber connections."""

    node: str
    query: str
    channels: dict[str, int] = field(default_factory=dict)


ControlOp = DisconnectUser | SubscribeUser | UnsubscribeUser | NodeHeartbeat | NodeGone | ChannelsQuery | ChannelsReply


def encode(op: ControlOp) -> dict[str, Any]:
    """The announce payload for ``op``."""
    if isinstance(op, DisconnectUser):
        return {"op": "disconnect", "user": op.user, "code": op.code, "reason": op.reason}
    if isinstance(op, SubscribeUser):
        return {"op": "subscribe", "user": op.user, "channel": op.channel}
    if isinstance(op, UnsubscribeUser):
        return {"op": "unsubscribe", "user": op.user, "channel": op.channel}
    if isinstance(op, NodeHeartbeat):
        return {"op": "node", "node": op.node, "hello": op.hello}
    if isinstance(op, NodeGone):
        return {"op": "node_gone", "node": op.node}
    if isinstance(op, ChannelsQuery):
        return {"op": "channels_query", "node": op.node, "query": op.query, "pattern": op.pattern}
    return {"op": "channels_reply", "node": op.node, "query": op.query, "channels": op.channels}


def decode(payload: Any) -> ControlOp:
    """Parse an announce payload from :data:`CONTROL_CHANNEL`.

    Raises:
        ValueError: not a control message this version understands (the caller logs and drops it).
    """
    if not isinstance(payload, dict):
        raise ValueError("control message is not an object")
    op = payload.get("op")
    if op in ("node", "node_gone", "channels_query", "channels_reply"):
        return _decode_node_op(op, payload)
    user = payload.get("user")
    if not isinstance(user, str) or not user:
        raise ValueError("control message without a user")
    if op == "disconnect":
        code, reason = payload.get("code"), payload.get("reason", "")
        if not isinstance(code, int) or isinstance(code, bool) or not 4000 <= code <= 4999:
            raise ValueError("disconnect code must be an integer in 4000-4999")
        if not isinstance(reason, str):
            raise ValueError("disconnect reason must be a string")
        return DisconnectUser(user, code, reason[:120])
    channel = payload.get("channel")
    if not isinstance(channel, str) or not channel:
        raise ValueError("control message without a channel")
    if op == "subscribe":
        return SubscribeUser(user, channel)
    if op == "unsubscribe":
        return UnsubscribeUser(user, channel)
    raise ValueError(f"unknown control op {op!r}")


def _decode_node_op(op: str, payload: dict[str, Any]) -> ControlOp:
    node = payload.get("node")
    if not isinstance(node, str) or not node:
        raise ValueError("control message without a node")
    if op == "node":
        return NodeHeartbeat(node, payload.get("hello") is True)
    if op == "node_gone":
        return NodeGone(node)
    query = payload.get("query")
    if not isinstance(query, str) or not query:
        raise ValueError("channels message without a query id")
    if op == "channels_query":
        pattern = payload.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError("channels pattern must be a string")
        return ChannelsQuery(node, query, pattern)
    channels = payload.get("channels")
    if not isinstance(channels, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in channels.items()
    ):
        raise ValueError("channels reply must map channel names to counts")
    return ChannelsReply(node, query, channels)


@dataclass(slots=True)
class _Query:
    waiting: set[str]
    counts: dict[str, int]
    done: asyncio.Future[None]


class ControlPlane:
    """One instance's end of the control channel: applies user operations to its own connections
    (through the server's per-user index), keeps the set of live instances, and answers and asks
    ``channels`` queries.

    ``channels`` is a scatter-gather over the broker: the asking instance waits until every
    instance it knows to be alive has answered, or the broker operation deadline passes; an
    instance that does not answer in time (overloaded, cut off) is missing from the counts, and
    one started less than a round trip ago may be too. The counts are a snapshot taken at slightly
    different moments on each instance: fine for dashboards and admin tools, not for billing.
    """

    def __init__(self, server: Server, *, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.server = server
        self.node = secrets.token_hex(8)
        self.reply_channel = reply_channel(self.node)
        self.heartbeat_s = heartbeat_s
        self._nodes: dict[str, float] = {}
        """Other instances -> monotonic time of their last heartbeat."""
        self._queries: dict[str, _Query] = {}
        self._beat: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the control channel and this instance's reply channel, then say hello."""
        broker = self.server.broker
        await broker.subscribe(CONTROL_CHANNEL)
        await broker.subscribe(self.reply_channel)
        self._send(CONTROL_CHANNEL, NodeHeartbeat(self.node, hello=True))
        self._beat = asyncio.get_running_loop().create_task(self._heartbeats(), name="control-heartbeat")

    async def stop(self) -> None:
        """Tell the others this instance is gone (best effort, bounded), then stop every task."""
        if self._beat is not None:
            self._beat.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.server.settings.broker_op_timeout_s):
                await self.server.broker.announce(CONTROL_CHANNEL, encode(NodeGone(self.node)))
        for task in list(self._tasks):
            task.cancel()
        for query in self._queries.values():
            if not query.done.done():
                query.done.set_result(None)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            self._send(CONTROL_CHANNEL, NodeHeartbeat(self.node))

    def _send(self, channel: str, op: ControlOp) -> None:
        """Announce in the background; a broker that is down only costs a log line."""
        self._spawn(self._announce(channel, op))

    async def _announce(self, channel: str, op: ControlOp) -> None:
        try:
            await self.server.broker.announce(channel, encode(op))
        except BrokerUnavailable as exc:
            logger.debug("control announce failed: %s", exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- receiving ----------------------------------------------------------------------------

    def owns(self, channel: str) -> bool:
        return channel == CONTROL_CHANNEL or channel == self.reply_channel

    def receive(self, message: Message) -> None:
        """Broker callback for the control and reply channels (the server routes them here)."""
        try:
            op = decode(message.payload)
        except ValueError as exc:
            logger.warning("dropped a control message: %s", exc)
            return
        if isinstance(op, NodeHeartbeat | NodeGone | ChannelsQuery | ChannelsReply):
            self._node_op(op)
        else:
            self.apply(op)

    def _node_op(self, op: NodeHeartbeat | NodeGone | ChannelsQuery | ChannelsReply) -> None:
        if op.node == self.node:
            return  # our own announce, delivered back to us
        if isinstance(op, NodeHeartbeat):
            known = op.node in self._nodes
            self._nodes[op.node] = time.monotonic()
            if op.hello and not known:
                self._send(CONTROL_CHANNEL, NodeHeartbeat(self.node))
        elif isinstance(op, NodeGone):
            self._nodes.pop(op.node, None)
            for query in self._queries.values():
                self._answered(query, op.node)
        elif isinstance(op, ChannelsQuery):
            self._nodes.setdefault(op.node, time.monotonic())
            reply = ChannelsReply(self.node, op.query, self.local_channels(op.pattern))
            self._send(reply_channel(op.node), reply)
        else:
            asked = self._queries.get(op.query)
            if asked is not None:
                for channel, count in op.channels.items():
                    asked.counts[channel] = asked.counts.get(channel, 0) + count
                self._answered(asked, op.node)

    @staticmethod
    def _answered(query: _Query, node: str) -> None:
        query.waiting.discard(node)
        if not query.waiting and not query.done.done():
            query.done.set_result(None)

    def apply(self, op: DisconnectUser | SubscribeUser | UnsubscribeUser) -> None:
        """Carry out a user operation on this instance's connections of ``op.user``."""
        server = self.server
        conns = server.connections_of(op.user)
        if not conns:
            return
        if isinstance(op, DisconnectUser):
            for conn in conns:
                conn.request_close(op.code, op.reason)
            logger.info("disconnected %d connection(s) of %s by the backend", len(conns), op.user)
            return
        settings = server.settings
        try:
            name, policy = parse_channel(
                op.channel,
                server.dispatcher.namespaces,
                separator=settings.channel_separator,
                max_length=settings.max_channel_name,
            )
        except InvalidChannel as exc:
            logger.warning("control %s of %s dropped: %s", type(op).__name__, op.channel, exc)
            return
        now = server.clock()
        for conn in conns:
            if isinstance(op, SubscribeUser):
                effects = conn.session.server_subscribe(name.full, policy, now)
            else:
                effects = conn.session.server_unsubscribe(name.full, policy, now)
            if effects:
                server.apply_later(conn, effects)

    # -- channels -----------------------------------------------------------------------------

    def live_nodes(self) -> set[str]:
        """Other instances heard from within three heartbeats."""
        cutoff = time.monotonic() - 3 * self.heartbeat_s
        for node in [n for n, seen in self._nodes.items() if seen < cutoff]:
            del self._nodes[node]
        return set(self._nodes)

    def local_channels(self, pattern: str | None) -> dict[str, int]:
        """Channels with local subscribers (matching the fnmatch ``pattern``) -> connections."""
        registry = self.server.registry
        counts: dict[str, int] = {}
        for channel in registry.channels():
            if pattern is None or fnmatch.fnmatchcase(channel, pattern):
                counts[channel] = len(tuple(registry.members(channel)))
        return counts

    async def channels(self, pattern: str | None) -> dict[str, int]:
        """Subscriber counts across every live instance (see the class docstring).

        Raises:
            BrokerUnavailable: the query could not be sent; only local counts would be known.
        """
        counts = self.local_channels(pattern)
        others = self.live_nodes()
        if not others:
            return counts
        query_id = secrets.token_hex(8)
        query = _Query(others, counts, asyncio.get_running_loop().create_future())
        self._queries[query_id] = query
        try:
            await self.server.broker.announce(CONTROL_CHANNEL, encode(ChannelsQuery(self.node, query_id, pattern)))
            try:
                async with asyncio.timeout(self.server.settings.broker_op_timeout_s):
                    await query.done
            except TimeoutError:
                logger.warning("channels: no answer in time from %d instance(s)", len(query.waiting))
        finally:
            del self._queries[query_id]
        return query.counts
