"""The sans-I/O dispatch core: frames in, effects out.

One :class:`Session` per connection. Feed it every received frame with :meth:`Session.receive`
and it returns a list of *effects* for the glue (``server.py``) to carry out, in order:

* :class:`Send` - bytes to queue for this connection;
* :class:`Close` - close the connection with a code, after the Sends before it;
* a broker command (:class:`Subscribe`, :class:`Unsubscribe`, :class:`Publish`,
  :class:`HistoryQuery`, :class:`PresenceQuery`) or :class:`CallRpc` - work that needs I/O. The glue
  runs it and reports back with the matching completion method (:meth:`Session.subscribed`,
  :meth:`Session.published`, ...) or :meth:`Session.failed`, which return the response.

Pipeline: parse -> validate -> rate limit -> authorize -> route -> acknowledge. Every request
with a readable ``id`` gets exactly one ``response`` or ``error`` carrying that id: either
straight from :meth:`~Session.receive` or from the completion of the one command it produced.
Nothing here raises on client input, awaits, or reads a clock: ``now`` (seconds since the epoch)
is always an argument.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .auth import AuthError, Identity, JwtVerifier, Operation, authorize
from .broker.base import History, Message, PresenceMember, PublishResult
from .channels import ChannelAuth, ChannelName, InvalidChannel, NamespacePolicy, parse_channel
from .limits import RateGuard, StrikeCounter, Verdict
from .protocol import (
    RPC_PREFIX,
    SUBSCRIPTION_ADDED,
    SUBSCRIPTION_REMOVED,
    Action,
    CloseCode,
    Codec,
    ErrorCode,
    JsonAcks,
    ProtocolError,
    Request,
    check_payload,
    encode,
    encoder,
    error,
    event,
    parse_request,
    publish_limit,
    response,
)
from .settings import Settings

_MAX_CACHED_CHANNELS: Final = 10_000
_MAX_CACHED_REPLAYS: Final = 2_048
_MAX_CACHED_REPLAY_BYTES: Final = 4 * 1024 * 1024
"""Bounds of :meth:`Dispatcher.encode_replayed`'s cache: entries, and bytes of encoded frames
(the cache also keeps the messages, whose payloads are about as large)."""
# Frames that show a broken or hostile client; enough of them close the connection with 4400.
NO_GRANTS: Final[frozenset[str]] = frozenset()
"""Shared by every session the connect hook granted nothing: since Python 3.10 each ``frozenset()``
call makes a new 216-byte object, which an idle connection would hold for nothing."""
_STRIKE_CODES: Final = frozenset({ErrorCode.BAD_FRAME, ErrorCode.INVALID_ENVELOPE, ErrorCode.UNSUPPORTED_VERSION})


# Not frozen: a frozen dataclass pays an object.__setattr__ per field (~0.1 us each) and these
# are built for every request or message. Nothing mutates them after construction.
# The ones built per request write their own ``__init__`` (``init=False``): in the mypyc build the
# one ``dataclass`` generates stays interpreted Python (measured: 142 ns against 24 ns for five
# fields); pure Python runs both at the same speed. ``==`` and ``repr`` still come from dataclass.
# Subclasses of :class:`Command` say ``init=False`` too (inheriting or writing their own): mypyc
# cannot mix a generated ``__init__`` with a written one in one hierarchy.
@dataclass(slots=True, init=False)
class Send:
    """Queue ``data`` (already encoded in the session's codec) for this connection."""

    data: bytes

    def __init__(self, data: bytes) -> None:
        self.data = data


@dataclass(slots=True)
class Close:
    """Close the connection with ``code`` once the effects before this one are done."""

    code: int
    reason: str


@dataclass(slots=True, init=False)
class Command:
    """Work for the glue on behalf of request ``id``; its completion produces the one response."""

    id: str
    action: str
    channel: str
    policy: NamespacePolicy

    def __init__(self, id: str, action: str, channel: str, policy: NamespacePolicy) -> None:
        self.id = id
        self.action = action
        self.channel = channel
        self.policy = policy


@dataclass(slots=True, init=False)
class Subscribe(Command):
    """Join locally (``broker.subscribe`` on the first member), presence join, then ``history``."""

    since_seq: int | None
    epoch: str | None

    def __init__(
        self, id: str, action: str, channel: str, policy: NamespacePolicy, since_seq: int | None, epoch: str | None
    ) -> None:
        Command.__init__(self, id, action, channel, policy)  # not super(): slots=True rebuilds the class
        self.since_seq = since_seq
        self.epoch = epoch


@dataclass(slots=True, init=False)
class Unsubscribe(Command):
    """Leave locally (``broker.unsubscribe`` on the last member), presence leave."""


@dataclass(slots=True, init=False)
class Publish(Command):
    payload: Any
    msg_id: str | None

    def __init__(
        self, id: str, action: str, channel: str, policy: NamespacePolicy, payload: Any, msg_id: str | None
    ) -> None:
        # Command's four fields again, not Command.__init__: one publish per request, and the call
        # would cost the pure build as much as the four assignments.
        self.id = id
        self.action = action
        self.channel = channel
        self.policy = policy
        self.payload = payload
        self.msg_id = msg_id


@dataclass(slots=True, init=False)
class HistoryQuery(Command):
    since_seq: int
    limit: int

    def __init__(
        self, id: str, action: str, channel: str, policy: NamespacePolicy, since_seq: int, limit: int
    ) -> None:
        Command.__init__(self, id, action, channel, policy)
        self.since_seq = since_seq
        self.limit = limit


@dataclass(slots=True, init=False)
class PresenceQuery(Command):
    pass


@dataclass(slots=True)
class CallRpc:
    """Run the handler registered for ``name`` (``handlers.py``)."""

    id: str
    action: str
    name: str
    channel: str | None
    payload: Any


Effect = Send | Close | Command | CallRpc


class Dispatcher:
    """What every session shares: settings, namespaces, the JWT verifier and the RPC names."""

    def __init__(
        self, settings: Settings, *, rpc_names: Collection[str] = (), verifier: JwtVerifier | None = None
    ) -> None:
        self.settings = settings
        self.fields = settings.envelope
        self.namespaces = {ns.name: ns for ns in settings.namespaces}
        self.rpc_names = frozenset(rpc_names)
        self.verifier = verifier
        self.channels: dict[str, tuple[ChannelName, NamespacePolicy]] = {}
        """Valid channel names already parsed (the result depends only on the name and settings)."""
        self.subscribe_hook = "subscribe" in settings.hook_targets
        """The application's subscribe hook is on: subscribes to ``hook`` namespaces go to it."""
        self.json_acks = JsonAcks(self.fields)
        """``ping`` and ``publish`` acks of JSON sessions, formatted instead of serialised."""
        self._replayed: dict[tuple[int, Codec], tuple[Message, bytes]] = {}
        """Replayed messages already encoded, by message object (see :meth:`encode_replayed`)."""
        self._replayed_bytes = 0

    def remember_channel(self, parsed: tuple[ChannelName, NamespacePolicy]) -> None:
        """Cache a parsed channel name; bounded, since clients choose the names."""
        if len(self.channels) >= _MAX_CACHED_CHANNELS:
            self.channels.clear()
        self.channels[parsed[0].full] = parsed

    def session(self, conn_id: str, identity: Identity, codec: Codec, now: float) -> Session:
        return Session(self, conn_id, identity, codec, now)

    def encode_message(self, codec: Codec, message: Message) -> bytes:
        """A ``message`` event; fan-out calls this once per codec and shares the bytes."""
        return encode(
            codec,
            event(
                "message",
                message.channel,
                message.payload,
                seq=message.seq,
                ts=message.ts,
                sender=message.sender,
                fields=self.fields,
            ),
            self.fields,
        )

    def encode_replayed(self, codec: Codec, message: Message) -> bytes:
        """:meth:`encode_message` for a replay, shared by the sessions replaying the same object.

        After a deploy thousands of sessions resume a shared channel, and the broker answers the
        reads of one loop iteration with the same :class:`Message` objects (a Redis shared read,
        the in-memory history): each is encoded once, not once per session. Keyed by the object,
        which the entry holds so its ``id`` cannot be reused while cached; bounded.
        """
        key = (id(message), codec)
        cached = self._replayed.get(key)
        if cached is not None and cached[0] is message:
            return cached[1]
        data = self.encode_message(codec, message)
        if len(self._replayed) >= _MAX_CACHED_REPLAYS or self._replayed_bytes > _MAX_CACHED_REPLAY_BYTES:
            self._replayed.clear()
            self._replayed_bytes = 0
        self._replayed[key] = (message, data)
        self._replayed_bytes += len(data)
        return data

    def encode_notice(self, codec: Codec, action: str, channel: str, payload: Any, ts: int) -> bytes:
        """An unsequenced event (``presence.join``, ``presence.leave``, ``resync``): no ``seq`` field."""
        fields = self.fields
        return encode(codec, event(action, channel, payload, seq=None, ts=ts, fields=fields), fields)


def _ms(now: float) -> int:
    return int(now * 1000)


class Session:
    """Protocol state of one connection. Create through :meth:`Dispatcher.session`."""

    def __init__(self, dispatcher: Dispatcher, conn_id: str, identity: Identity, codec: Codec, now: float) -> None:
        settings = dispatcher.settings
        self.dispatcher = dispatcher
        self.conn_id = conn_id
        self.identity = identity
        self.codec = codec
        self.closed = False
        self._rate = RateGuard(settings.rate_per_s, settings.rate_burst, settings.rate_violations_before_close, now)
        self._bucket = self._rate.bucket
        self._max_payload = settings.max_payload_bytes
        self._max_publish = publish_limit(settings.max_payload_bytes)
        self._encode = encoder(codec, dispatcher.fields)
        """``orjson.dumps`` itself for JSON: every reply is encoded without a Python frame around it."""
        self._acks: JsonAcks | None = dispatcher.json_acks if codec is Codec.JSON else None
        self._strikes = StrikeCounter(settings.bad_frames_before_close)
        self._subscriptions: dict[str, int] = {}
        """Active channel -> last seq delivered to this connection."""
        self._epochs: dict[str, str] = {}
        self._pending: dict[str, list[tuple[int, bytes]]] = {}
        """Channel being subscribed -> live events that arrived meanwhile, replayed after the response."""
        self.info: dict[str, Any] | None = None
        """What the application's connect hook attached to this connection (``hooks.py``); sent
        back to it with every later hook call of the connection."""
        self.grants: frozenset[str] = NO_GRANTS
        """Channels the connect hook granted: subscribe (and its reads, presence and history) is
        allowed whatever the namespace policy says, without asking the subscribe hook."""

    # -- inputs -----------------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """Active subscriptions, for cleanup when the connection ends."""
        return list(self._subscriptions)

    @property
    def presence_user(self) -> str:
        """The user id shown in presence; anonymous connections appear by connection id."""
        return self.identity.user if self.identity.user is not None else f"anonymous:{self.conn_id}"

    @property
    def expires_at(self) -> float | None:
        return self.identity.exp

    def receive(self, data: bytes | str, now: float) -> list[Effect]:
        """Handle one frame from the client. Never raises on client input."""
        outcome = self.answer(data, now)
        return [Send(outcome)] if isinstance(outcome, bytes) else outcome

    def answer(self, data: bytes | str, now: float) -> bytes | list[Effect]:
        """:meth:`receive`, except that a ``ping``'s outcome, exactly one reply, comes back as
        its encoded bytes, not ``[Send(bytes)]``.

        The glue's per-frame path calls this: the frame's one reply is queued without a list, an
        effect object and a loop over them. The checks and their order are :meth:`receive`'s.
        """
        if self.closed:
            return []
        # Every step below runs for every frame: checks are inline where a helper would only
        # add a call (the payload cap, the rate check), and channel actions, nearly all
        # requests, go straight to their router.
        if len(data) > self._max_publish:
            if len(data) > self._max_payload:
                return self._close(CloseCode.MESSAGE_TOO_BIG, "message too big")
            large = True
        else:
            large = False
        parsed = parse_request(data, self.codec, self.dispatcher.fields)
        if isinstance(parsed, ProtocolError):
            effects: list[Effect] = [self._error(parsed.id, parsed.code, parsed.message, action=parsed.action)]
            if parsed.code in _STRIKE_CODES and self._strikes.strike():
                effects.extend(self._close(CloseCode.PROTOCOL_VIOLATION, "too many bad frames"))
            return effects
        wait = self._bucket.take(now)
        if wait == 0.0:
            action = parsed.action
            if large and action == "publish":
                # Its event (plus seq, ts, sender) would not fit the limit subscribers are promised.
                message = f"publish of {len(data)} bytes; at most {self._max_publish} (max_payload_bytes - headroom)"
                return [self._error(parsed.id, ErrorCode.PAYLOAD_TOO_LARGE, message, action=action)]
            if action == _PING:  # before the set lookup: a length check settles it for the rest
                return self._pong(parsed.id, now)
            if action in _CHANNEL_ACTIONS:
                return self._route_channel(parsed, action, now)
            return self._route(parsed, now)
        decision = self._rate.judge(wait)
        effects = [
            self._error(
                parsed.id,
                ErrorCode.RATE_LIMITED,
                "too many messages",
                action=parsed.action,
                retry_after_ms=decision.retry_after_ms,
            )
        ]
        if decision.verdict is Verdict.CLOSE:
            effects.extend(self._close(CloseCode.RATE_LIMITED, "rate limit exceeded repeatedly"))
        return effects

    def offer(self, channel: str, seq: int, data: bytes) -> bool:
        """Should this live event (shared ``data``) go out now? Buffers it while subscribing.

        ``seq == 0`` marks unsequenced notices (presence), which are never buffered or deduplicated.
        Sequenced events at or below the last delivered seq are duplicates and are dropped.
        """
        last = self._subscriptions.get(channel)
        if last is None:
            pending = self._pending.get(channel)
            if pending is not None and seq > 0:
                pending.append((seq, data))
            return False
        if seq == 0:
            return True
        if seq <= last:
            return False
        self._subscriptions[channel] = seq
        return True

    def follow_epoch(self, channel: str, epoch: str, seq: int, ts: int) -> bytes | None:
        """A live event of ``channel`` comes from broker epoch ``epoch``; call before :meth:`offer`.

        When the epoch differs from the one this subscription knows, the broker lost the channel's
        state (Redis restarted empty, stream recreated) and numbers it from 1 again. :meth:`offer`
        would drop those lower ``seq`` values as duplicates: silent loss. Instead dedupe restarts
        just before ``seq`` and this returns the ``resync`` event (reason ``epoch_changed``, as on
        subscribe) to queue first, so the client refetches state and then gets the new events.
        None when nothing changed or the channel is not (yet) active.
        """
        known = self._epochs.get(channel)
        if not known or known == epoch or channel not in self._subscriptions:
            return None
        self._epochs[channel] = epoch
        self._subscriptions[channel] = seq - 1
        notice = {"reason": "epoch_changed", "seq": seq - 1, "epoch": epoch}
        return self.dispatcher.encode_notice(self.codec, "resync", channel, notice, ts)

    def lost(self, channel: str, through: int, epoch: str | None, ts: int) -> bytes | None:
        """The broker will never deliver ``channel``'s messages up to ``through``: the ``resync``
        event (reason ``messages_lost``) to queue, or None when this session is not (yet) active
        on the channel or already past ``through``. Later events continue after ``through``."""
        last = self._subscriptions.get(channel)
        if last is None or last >= through:
            return None
        self._subscriptions[channel] = through
        if not epoch:
            epoch = self._epochs.get(channel, "")
        notice = {"reason": "messages_lost", "seq": through, "epoch": epoch}
        return self.dispatcher.encode_notice(self.codec, "resync", channel, notice, ts)

    def expire(self, now: float) -> list[Effect]:
        """Close with 4001 when the token's ``exp`` has passed (the glue calls this at ``expires_at``)."""
        exp = self.identity.exp
        if self.closed or exp is None or now < exp:
            return []
        return self._close(CloseCode.TOKEN_EXPIRED, "token expired")

    # -- completions ------------------------------------------------------------------------

    def subscribed(
        self, cmd: Subscribe, history: History, members: Sequence[PresenceMember] | None, now: float
    ) -> list[Effect]:
        """The glue joined the channel and read ``history`` (``since_seq`` or 0, limit ``max_replay``)."""
        buffered = self._pending.pop(cmd.channel, [])
        if self.closed:
            return []
        last_seq = history.last_seq
        replay: Sequence[Message] = ()
        reason: str | None = None
        if cmd.since_seq is not None:
            if cmd.epoch is not None and cmd.epoch != history.epoch:
                reason = "epoch_changed"
            elif cmd.since_seq > last_seq:
                reason = "ahead_of_server"
            elif cmd.since_seq < last_seq and not cmd.policy.history_enabled:
                reason = "no_history"
            elif not history.recovered:
                reason = "history_expired"
            else:
                replay = [m for m in history.messages if m.seq > cmd.since_seq]
                if (replay[-1].seq if replay else cmd.since_seq) < last_seq:
                    reason, replay = "too_far_behind", ()
        payload: dict[str, Any] = {
            "seq": last_seq,
            "epoch": history.epoch,
            "recovered": reason is None,
            "replayed": len(replay),
        }
        if members is not None:
            payload["presence"] = [{"user": m.user, "connections": m.connections} for m in members]
        dispatcher = self.dispatcher
        if cmd.id:
            effects: list[Effect] = [self._response(cmd.id, cmd.action, payload, now, cmd.channel)]
        else:  # server-side (the application's backend): no request to answer, tell the client
            effects = [Send(dispatcher.encode_notice(self.codec, SUBSCRIPTION_ADDED, cmd.channel, payload, _ms(now)))]
        codec = self.codec
        effects.extend(Send(dispatcher.encode_replayed(codec, m)) for m in replay)
        if reason is not None:
            notice = {"reason": reason, "seq": last_seq, "epoch": history.epoch}
            effects.append(Send(dispatcher.encode_notice(self.codec, "resync", cmd.channel, notice, _ms(now))))
        last = last_seq
        for seq, data in buffered:
            if seq > last:
                effects.append(Send(data))
                last = seq
        self._subscriptions[cmd.channel] = last
        self._epochs[cmd.channel] = history.epoch
        return effects

    def unsubscribed(self, cmd: Unsubscribe, now: float) -> list[Effect]:
        if not cmd.id:
            return []  # server-side: the client was told when the session dropped the channel
        return [self._response(cmd.id, cmd.action, {}, now, cmd.channel)]

    def published(self, cmd: Publish, result: PublishResult, now: float) -> list[Effect]:
        return [Send(self.publish_ack(cmd, result, now))]

    def publish_ack(self, cmd: Publish, result: PublishResult, now: float) -> bytes:
        """:meth:`published`'s one reply, encoded: the server's in-process publish path queues it
        as it is."""
        acks = self._acks
        if acks is not None and not result.duplicate and cmd.action == _PUBLISH:
            return acks.publish(cmd.id, cmd.channel, result.message.seq, int(now * 1000))
        payload: dict[str, Any] = {"seq": result.message.seq}
        if result.duplicate:
            payload["duplicate"] = True
        fields = self.dispatcher.fields
        return self._encode(response(cmd.id, cmd.action, payload, int(now * 1000), fields, cmd.channel))

    def history_loaded(self, cmd: HistoryQuery, history: History, now: float) -> list[Effect]:
        fields = self.dispatcher.fields
        messages = [
            event("message", m.channel, m.payload, seq=m.seq, ts=m.ts, sender=m.sender, fields=fields)
            for m in history.messages
        ]
        payload = {"messages": messages, "epoch": history.epoch, "recovered": history.recovered}
        return [self._response(cmd.id, cmd.action, payload, now, cmd.channel)]

    def presence_loaded(self, cmd: PresenceQuery, members: Sequence[PresenceMember], now: float) -> list[Effect]:
        listed = [{"user": m.user, "connections": m.connections} for m in members]
        return [self._response(cmd.id, cmd.action, {"members": listed}, now, cmd.channel)]

    def rpc_returned(self, cmd: CallRpc, result: Any, now: float) -> list[Effect]:
        if not check_payload(result):
            return [self._error(cmd.id, ErrorCode.INTERNAL, "handler returned non-JSON data", action=cmd.action)]
        return [self._response(cmd.id, cmd.action, result, now)]

    def failed(self, cmd: Command | CallRpc, code: ErrorCode | str, message: str) -> list[Effect]:
        """The command could not be carried out; answers its request with an error."""
        if isinstance(cmd, Subscribe):
            self._pending.pop(cmd.channel, None)
        if isinstance(cmd, Command) and not cmd.id:
            return []  # server-side: nobody to answer; the glue logged it
        return [self._error(cmd.id, code, message, action=cmd.action)]

    # -- server-side subscriptions (control plane) --------------------------------------------

    def follows(self, channel: str) -> bool:
        """Subscribed to ``channel``, or subscribing."""
        return channel in self._subscriptions or channel in self._pending

    def server_subscribe(self, channel: str, policy: NamespacePolicy, now: float) -> list[Effect]:
        """The application's backend subscribes this connection to ``channel``.

        Exactly what the connection's own ``subscribe`` would do (join, presence, history
        position, buffered live events), without the client's authorization: the backend decided.
        Its completion sends the ``subscription.added`` event instead of a response. Nothing to do
        when the connection already has (or is getting) the channel, or is at its subscription
        limit (logged by the caller's absence of an event: the backend can query presence).
        """
        if self.closed or channel in self._subscriptions or channel in self._pending:
            return []
        if len(self._subscriptions) + len(self._pending) >= self.dispatcher.settings.max_subscriptions_per_connection:
            return []
        self._pending[channel] = []
        return [Subscribe("", Action.SUBSCRIBE.value, channel, policy, None, None)]

    def server_unsubscribe(self, channel: str, policy: NamespacePolicy, now: float) -> list[Effect]:
        """The application's backend removes ``channel`` from this connection: the client gets
        ``subscription.removed`` (after every event of the channel already queued), then the
        glue leaves the channel. Nothing to do when the connection does not have it."""
        if self.closed or channel not in self._subscriptions:
            return []
        del self._subscriptions[channel]
        self._epochs.pop(channel, None)
        notice = self.dispatcher.encode_notice(self.codec, SUBSCRIPTION_REMOVED, channel, {"reason": "server"}, _ms(now))
        return [Send(notice), Unsubscribe("", Action.UNSUBSCRIBE.value, channel, policy)]

    # -- routing ----------------------------------------------------------------------------

    def _route(self, request: Request, now: float) -> list[Effect]:
        """Every action but the channel actions and ``ping`` (see :meth:`answer`)."""
        action = request.action
        if action == _AUTH_REFRESH:
            return self._refresh(request, now)
        if action.startswith(RPC_PREFIX):
            name = action[len(RPC_PREFIX) :]
            if name not in self.dispatcher.rpc_names:
                return [self._error(request.id, ErrorCode.UNKNOWN_ACTION, f"no handler for {action!r}")]
            return [CallRpc(request.id, action, name, request.channel, request.payload)]
        if action not in _CHANNEL_ACTIONS:
            return [self._error(request.id, ErrorCode.UNKNOWN_ACTION, f"unknown action {action[:64]!r}")]
        return self._route_channel(request, action, now)

    def _route_channel(self, request: Request, action: str, now: float) -> list[Effect]:
        settings = self.dispatcher.settings
        if request.channel is None:
            return [self._error(request.id, ErrorCode.INVALID_ENVELOPE, "'channel' is required", action=action)]
        parsed = self.dispatcher.channels.get(request.channel)
        if parsed is None:
            try:
                parsed = parse_channel(
                    request.channel,
                    self.dispatcher.namespaces,
                    separator=settings.channel_separator,
                    max_length=settings.max_channel_name,
                )
            except InvalidChannel as exc:
                return [self._error(request.id, ErrorCode.INVALID_CHANNEL, str(exc), action=action)]
            self.dispatcher.remember_channel(parsed)
        name, policy = parsed
        channel = name.full
        if action == _UNSUBSCRIBE:
            if channel not in self._subscriptions:
                return [self._error(request.id, ErrorCode.NOT_SUBSCRIBED, "not subscribed", action=action)]
            del self._subscriptions[channel]
            self._epochs.pop(channel, None)
            return [Unsubscribe(request.id, action, channel, policy)]
        operation = _PUBLISH_OP if action == _PUBLISH else _SUBSCRIBE_OP
        granted = operation is _SUBSCRIBE_OP and channel in self.grants
        denied = None if granted else authorize(self.identity, name, policy, operation)
        if denied is None and policy.auth is _HOOK and not granted:
            denied = self._hook_policy(action, channel, policy)
        if denied is not None:
            code = ErrorCode.UNAUTHORIZED if self.identity.user is None else ErrorCode.FORBIDDEN
            if operation is _PUBLISH_OP and not policy.client_publish:
                code = ErrorCode.FORBIDDEN
            return [self._error(request.id, code, denied, action=action)]
        payload = request.payload
        if action == _PUBLISH:
            return [Publish(request.id, action, channel, policy, payload, request.msg_id)]
        if action == _SUBSCRIBE:
            return self._subscribe(request, channel, policy, now)
        if action == _HISTORY:
            return self._history(request, channel, policy)
        if not policy.presence:
            message = f"presence is off for namespace {policy.name!r}"
            return [self._error(request.id, ErrorCode.FORBIDDEN, message, action=action)]
        return [PresenceQuery(request.id, action, channel, policy)]

    def _hook_policy(self, action: str, channel: str, policy: NamespacePolicy) -> str | None:
        """A ``hook`` namespace: the subscribe hook decides subscribes (the server asks it while
        carrying out :class:`Subscribe`); publish, presence and history need a live subscription,
        so they are never open to a connection the application did not let in."""
        if action == _SUBSCRIBE:
            if not self.dispatcher.subscribe_hook:
                return f"namespace {policy.name!r} is decided by the subscribe hook, which is not enabled"
            return None
        if channel not in self._subscriptions:
            return f"subscribe to {channel!r} first: the application decides who may use it"
        return None

    def _subscribe(self, request: Request, channel: str, policy: NamespacePolicy, now: float) -> list[Effect]:
        args = request.payload if request.payload is not None else {}
        since_seq = args.get("since_seq") if isinstance(args, dict) else None
        epoch = args.get("epoch") if isinstance(args, dict) else None
        if (
            not isinstance(args, dict)
            or (since_seq is not None and not _is_seq(since_seq))
            or (epoch is not None and not isinstance(epoch, str))
        ):
            message = "payload must be {since_seq?: int >= 0, epoch?: str}"
            return [self._error(request.id, ErrorCode.INVALID_ENVELOPE, message, action=request.action)]
        last = self._subscriptions.get(channel)
        if last is not None and since_seq is None:
            # Already subscribed: idempotent, nothing to replay.
            payload = {"seq": last, "epoch": self._epochs.get(channel, ""), "recovered": True, "replayed": 0}
            return [self._response(request.id, request.action, payload, now, channel)]
        if channel in self._pending:
            message = "a subscribe to this channel is already in progress"
            return [self._error(request.id, ErrorCode.INVALID_ENVELOPE, message, action=request.action)]
        if last is None and len(self._subscriptions) + len(self._pending) >= self.dispatcher.settings.max_subscriptions_per_connection:
            return [self._error(request.id, ErrorCode.TOO_MANY_SUBSCRIPTIONS, "subscription limit reached", action=request.action)]
        if last is not None:
            # Re-subscribe with since_seq: replay again from the given point.
            del self._subscriptions[channel]
        self._pending[channel] = []
        return [Subscribe(request.id, request.action, channel, policy, since_seq, epoch)]

    def _history(self, request: Request, channel: str, policy: NamespacePolicy) -> list[Effect]:
        if not policy.history_enabled:
            message = f"namespace {policy.name!r} keeps no history"
            return [self._error(request.id, ErrorCode.HISTORY_UNAVAILABLE, message, action=request.action)]
        max_replay = self.dispatcher.settings.max_replay
        args = request.payload if request.payload is not None else {}
        since_seq = args.get("since_seq", 0) if isinstance(args, dict) else None
        limit = args.get("limit", max_replay) if isinstance(args, dict) else None
        if not isinstance(since_seq, int) or not _is_seq(since_seq) or not isinstance(limit, int) or not 0 < limit <= max_replay:
            message = f"payload must be {{since_seq: int >= 0, limit?: 1..{max_replay}}}"
            return [self._error(request.id, ErrorCode.INVALID_ENVELOPE, message, action=request.action)]
        return [HistoryQuery(request.id, request.action, channel, policy, since_seq, limit)]

    def _refresh(self, request: Request, now: float) -> list[Effect]:
        action = request.action
        verifier = self.dispatcher.verifier
        if verifier is None:
            return [self._error(request.id, ErrorCode.UNAUTHORIZED, "authentication is disabled", action=action)]
        token = request.payload.get("token") if isinstance(request.payload, dict) else None
        if not isinstance(token, str) or not token:
            return [self._error(request.id, ErrorCode.INVALID_ENVELOPE, "payload must be {token: str}", action=action)]
        try:
            identity = verifier.verify(token, now)
        except AuthError as exc:
            return [self._error(request.id, ErrorCode.UNAUTHORIZED, exc.reason, action=action)]
        if identity.user != self.identity.user:
            effects: list[Effect] = [self._error(request.id, ErrorCode.FORBIDDEN, "identity changed", action=action)]
            effects.extend(self._close(CloseCode.FORBIDDEN, "identity changed"))
            return effects
        self.identity = identity
        return [self._response(request.id, action, {"exp": identity.claims.get("exp")}, now)]

    # -- frames -----------------------------------------------------------------------------

    def _pong(self, request_id: str, now: float) -> bytes:
        """The ``ping`` response: ``{"ts": now in ms}``, in the envelope's ``ts`` as well."""
        ts = int(now * 1000)
        acks = self._acks
        if acks is not None:
            return acks.ping(request_id, ts)
        return self._encode(response(request_id, _PING, {"ts": ts}, ts, self.dispatcher.fields))

    def _response(
        self, request_id: str, action: str, payload: Any, now: float, channel: str | None = None
    ) -> Send:
        fields = self.dispatcher.fields
        return Send(self._encode(response(request_id, action, payload, int(now * 1000), fields, channel)))

    def _error(
        self,
        request_id: str | None,
        code: ErrorCode | str,
        message: str,
        *,
        action: str | None = None,
        retry_after_ms: int | None = None,
    ) -> Send:
        frame = error(
            request_id, code, message, action=action, retry_after_ms=retry_after_ms, fields=self.dispatcher.fields
        )
        return Send(self._encode(frame))

    def _close(self, code: int, reason: str) -> list[Effect]:
        self.closed = True
        return [Close(code, reason)]


# Plain copies: reading ``Action.X.value`` goes through the enum class on every request.
_PUBLISH_OP: Final = Operation.PUBLISH
_SUBSCRIBE_OP: Final = Operation.SUBSCRIBE
_HOOK: Final = ChannelAuth.HOOK
_PING: Final = Action.PING.value
_AUTH_REFRESH: Final = Action.AUTH_REFRESH.value
_SUBSCRIBE: Final = Action.SUBSCRIBE.value
_UNSUBSCRIBE: Final = Action.UNSUBSCRIBE.value
_PUBLISH: Final = Action.PUBLISH.value
_HISTORY: Final = Action.HISTORY.value
_CHANNEL_ACTIONS: Final = frozenset(
    {Action.SUBSCRIBE.value, Action.UNSUBSCRIBE.value, Action.PUBLISH.value, Action.PRESENCE.value, Action.HISTORY.value}
)


def _is_seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
