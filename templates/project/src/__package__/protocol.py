"""Wire protocol v1: envelope, codecs, error codes and close codes. No I/O.

Every frame on the wire is one envelope (a JSON object in a text frame, or a MessagePack map in a
binary frame). This module turns bytes into a validated :class:`Request` or a :class:`ProtocolError`
that says which error the client gets, and builds the ``response`` / ``error`` / ``event`` frames.
It never raises on client input: :func:`parse_request` is total over ``bytes | str``.

Field names are configurable (memory conventions): :class:`Fields` maps each logical name to its
wire name, and the generated ``settings.py`` holds the project's mapping.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import orjson

VERSION: Final = 1
AUTH_SUBPROTOCOL_PREFIX: Final = "wsforge.auth."
"""Browsers cannot set headers, so they may carry the token as a subprotocol entry; never echoed."""

MAX_ID_LENGTH: Final = 64
MAX_MSG_ID_LENGTH: Final = 128
MAX_PAYLOAD_DEPTH: Final = 64
"""Nesting deeper than this is refused, so that every accepted payload can be re-encoded by both codecs."""
_MAX_INT: Final = 2**63 - 1
_MIN_INT: Final = -(2**63)


class Codec(enum.Enum):
    """How envelopes are serialized; negotiated through the subprotocol."""

    JSON = "json"
    MSGPACK = "msgpack"

    @property
    def subprotocol(self) -> str:
        return f"wsforge.v{VERSION}.{self.value}"

    @property
    def is_text(self) -> bool:
        """JSON travels in text frames, MessagePack in binary frames."""
        return self is Codec.JSON


PUBLISH_HEADROOM: Final = 256
"""Bytes a published payload grows by on its way to subscribers (``seq``, ``ts``, ``sender``): a
publish larger than ``max_payload_bytes - PUBLISH_HEADROOM`` is answered ``payload_too_large``
(the connection stays open), so every event fits the same limit; above ``max_payload_bytes``
the transport closes with 1009 before the frame is read. Clients refuse such a publish locally."""


def publish_limit(max_payload_bytes: int) -> int:
    """The largest publish frame answered with anything but ``payload_too_large`` (see above)."""
    return max(max_payload_bytes - PUBLISH_HEADROOM, max_payload_bytes // 2)


class ErrorCode(enum.StrEnum):
    """Values of ``error.code`` (runtime contract §3)."""

    BAD_FRAME = "bad_frame"
    INVALID_ENVELOPE = "invalid_envelope"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_ACTION = "unknown_action"
    INVALID_CHANNEL = "invalid_channel"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_SUBSCRIBED = "not_subscribed"
    RATE_LIMITED = "rate_limited"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    TOO_MANY_CHANNELS = "too_many_channels"
    BROKER_UNAVAILABLE = "broker_unavailable"
    HISTORY_UNAVAILABLE = "history_unavailable"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses (runtime contract §3)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    TOKEN_EXPIRED = 4001
    FORBIDDEN = 4003
    RATE_LIMITED = 4008
    SLOW_CONSUMER = 4009
    PROTOCOL_VIOLATION = 4400


class Action(enum.StrEnum):
    """Request actions other than ``rpc.<name>``."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    PUBLISH = "publish"
    PRESENCE = "presence"
    HISTORY = "history"
    PING = "ping"
    AUTH_REFRESH = "auth.refresh"


RPC_PREFIX: Final = "rpc."
SUBSCRIPTION_ADDED: Final = "subscription.added"
"""Server-sent event (no ``id``, no ``seq``): the application's backend subscribed this connection
to ``channel`` (server API ``subscribe``). Its payload is what a ``subscribe`` response carries
(``seq``, ``epoch``, ``recovered``, ``replayed``, ``presence?``); the channel's events follow it, and
clients keep the subscription (resumed on reconnect) as if they had asked for it themselves."""
SUBSCRIPTION_REMOVED: Final = "subscription.removed"
"""Server-sent event: the application's backend removed ``channel`` from this connection (server
API ``unsubscribe``); payload ``{"reason": "server"}``. No event of the channel follows it."""
CHANNEL_ACTIONS: Final = frozenset({"subscribe", "unsubscribe", "publish", "presence", "history"})


@dataclass(frozen=True, slots=True)
class Fields:
    """Wire names of the envelope fields (logical name -> wire name)."""

    v: str = "v"
    type: str = "type"
    action: str = "action"
    id: str = "id"
    channel: str = "channel"
    payload: str = "payload"
    seq: str = "seq"
    ts: str = "ts"
    sender: str = "sender"
    error: str = "error"
    msg_id: str = "msg_id"


DEFAULT_FIELDS: Final = Fields()


# Not frozen: a frozen dataclass pays an object.__setattr__ per field (~0.1 us each) and these
# are built for every request or message. Nothing mutates them after construction. Its own
# ``__init__`` (``init=False``): dataclass's generated one stays interpreted in the mypyc build.
@dataclass(slots=True, init=False)
class Request:
    """A well-formed request envelope. ``channel`` is still unchecked against the namespaces."""

    id: str
    action: str
    channel: str | None
    payload: Any
    msg_id: str | None

    def __init__(
        self, id: str, action: str, channel: str | None, payload: Any, msg_id: str | None = None
    ) -> None:
        self.id = id
        self.action = action
        self.channel = channel
        self.payload = payload
        self.msg_id = msg_id


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Why a frame was refused; ``id`` is the request id when it could be read, else ``None``."""

    code: ErrorCode
    message: str
    id: str | None = None
    action: str | None = None

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


class FrameError(ValueError):
    """Raised by :func:`decode` for bytes that are not a valid JSON / MessagePack document."""


_JSON: Final = Codec.JSON
"""Module constant: reading ``Codec.JSON`` goes through the enum class (~75 ns) on every frame."""
_json_loads: Final = orjson.loads
_json_dumps: Final = orjson.dumps
"""Module constants are ``Final`` for the mypyc build: it keeps a Final name in a C static, where a
plain global (or ``orjson.loads``, two lookups) costs a dictionary lookup on every frame."""


def encode(codec: Codec, obj: Any) -> bytes:
    """Serialize ``obj`` with ``codec``; JSON output is UTF-8 meant for a text frame."""
    if codec is _JSON:
        return orjson.dumps(obj)
    return _pack(obj)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def encoder(codec: Codec) -> Callable[[Any], bytes]:
    """:func:`encode` bound to ``codec``. For JSON it is ``orjson.dumps`` itself, so a caller that
    encodes on every request (a session's replies) pays no Python frame around the C call."""
    return orjson.dumps if codec is _JSON else _pack


def decode(codec: Codec, data: bytes | str) -> Any:
    """Parse one frame. Text frames are always JSON, whatever was negotiated.

    Raises:
        FrameError: the data is not a document in that codec.
    """
    try:
        if codec is _JSON or isinstance(data, str):
            return orjson.loads(data)
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # every decoder failure is the client's problem, never ours
        raise FrameError(str(exc) or type(exc).__name__) from exc


def select_codec(offered: Sequence[str], supported: Sequence[Codec]) -> tuple[Codec, str | None] | None:
    """Pick the subprotocol for a handshake.

    Returns ``(codec, subprotocol to echo)``. A client that offers no codec subprotocol gets JSON
    with no subprotocol header, so a bare ``new WebSocket(url)`` works. ``None`` means the client
    offered only unknown subprotocols: refuse with HTTP 400.
    """
    wanted = [p for p in offered if not p.startswith(AUTH_SUBPROTOCOL_PREFIX)]
    if not wanted:
        return Codec.JSON, None
    for codec in supported:
        if codec.subprotocol in wanted:
            return codec, codec.subprotocol
    return None


def check_payload(value: Any, depth: int = 0) -> bool:
    """True when ``value`` is plain JSON data both codecs can re-encode (str keys, 64-bit ints)."""
    if type(value) is dict:
        # The usual payload: an object of strings and numbers. Exact-type checks on the items
        # skip a recursive call per scalar; anything else takes the general path below.
        if depth >= MAX_PAYLOAD_DEPTH:
            return False
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str and not isinstance(key, str):
                return False
            if kind is str or kind is float or kind is bool or item is None:
                continue
            if not check_payload(item, depth + 1):
                return False
        return True
    if value is None or isinstance(value, (str, bool, float)):
        return True
    if isinstance(value, int):
        return _MIN_INT <= value <= _MAX_INT
    if depth >= MAX_PAYLOAD_DEPTH:
        return False
    # Loops, not all(<generator>): this runs on every request and generators cost a frame each.
    if isinstance(value, list):
        for item in value:  # noqa: SIM110 - see above
            if not check_payload(item, depth + 1):
                return False
        return True
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not check_payload(item, depth + 1):
                return False
        return True
    return False


def parse_request(data: bytes | str, codec: Codec, fields: Fields = DEFAULT_FIELDS) -> Request | ProtocolError:
    """Validate one incoming frame. Never raises.

    Checks, in order: decodable object, ``id``, ``v``, ``type``, ``action``, ``channel`` and
    ``msg_id`` types. Whether the channel exists and may be used is the dispatcher's business.
    """
    if codec is _JSON or type(data) is str:
        # decode() inlined for the usual frame: one call less per request.
        try:
            obj = _json_loads(data)
        except orjson.JSONDecodeError as exc:
            return ProtocolError(ErrorCode.BAD_FRAME, f"frame is not valid json: {exc}"[:200])
    else:
        try:
            obj = decode(codec, data)
        except FrameError as exc:
            return ProtocolError(ErrorCode.BAD_FRAME, f"frame is not valid {codec.value}: {exc}"[:200])
    if not isinstance(obj, dict):
        return ProtocolError(ErrorCode.BAD_FRAME, "frame is not an object")
    return parse_envelope(obj, fields)


def parse_envelope(obj: dict[Any, Any], fields: Fields = DEFAULT_FIELDS) -> Request | ProtocolError:
    """Validate a decoded envelope; see :func:`parse_request`.

    Exact type checks (``type(x) is str``): the decoders only produce exact ``str``/``int``/
    ``dict``/``list``, and ``type() is`` costs a fraction of ``isinstance`` on every request.
    ``obj`` is typed ``dict``, not ``Mapping``: mypyc then calls ``dict.get`` directly instead of
    through a bound method object.
    """
    raw_id = obj.get(fields.id)
    request_id = raw_id if type(raw_id) is str and 0 < len(raw_id) <= MAX_ID_LENGTH else None
    action = obj.get(fields.action)
    action_name = action if type(action) is str and len(action) <= 64 else None
    if request_id is None:
        return ProtocolError(
            ErrorCode.INVALID_ENVELOPE, f"'{fields.id}' must be a string of 1..{MAX_ID_LENGTH} chars"
        )
    version = obj.get(fields.v)
    if type(version) is not int:  # bool is not int here, as JSON wants
        return ProtocolError(
            ErrorCode.INVALID_ENVELOPE, f"'{fields.v}' must be an integer", request_id, action_name
        )
    if version != VERSION:
        return ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {VERSION} is supported",
            request_id,
            action_name,
        )
    if obj.get(fields.type) != "request":
        return ProtocolError(
            ErrorCode.INVALID_ENVELOPE, f"'{fields.type}' must be 'request'", request_id, action_name
        )
    if action_name is None:
        return ProtocolError(ErrorCode.INVALID_ENVELOPE, f"'{fields.action}' must be a string", request_id)
    if len(obj) == 4:
        # Only the four keys read above (a ping, an rpc without payload): nothing more to check,
        # and three lookups of absent keys saved.
        return Request(request_id, action_name, None, None, None)
    channel = obj.get(fields.channel)
    if channel is not None and type(channel) is not str:
        return ProtocolError(
            ErrorCode.INVALID_ENVELOPE, f"'{fields.channel}' must be a string", request_id, action_name
        )
    msg_id = obj.get(fields.msg_id)
    if msg_id is not None and not (type(msg_id) is str and 0 < len(msg_id) <= MAX_MSG_ID_LENGTH):
        return ProtocolError(
            ErrorCode.INVALID_ENVELOPE,
            f"'{fields.msg_id}' must be a string of 1..{MAX_MSG_ID_LENGTH} chars",
            request_id,
            action_name,
        )
    payload = obj.get(fields.payload)
    if payload is not None and not check_payload(payload):
        return ProtocolError(
            ErrorCode.INVALID_ENVELOPE,
            f"'{fields.payload}' must be JSON data nested at most {MAX_PAYLOAD_DEPTH} deep",
            request_id,
            action_name,
        )
    return Request(request_id, action_name, channel, payload, msg_id)  # positional: keywords cost 0.2 us here


def response(
    request_id: str,
    action: str,
    payload: Any,
    ts: int,
    fields: Fields = DEFAULT_FIELDS,
    channel: str | None = None,
) -> dict[str, Any]:
    """The one successful answer to a request; ``channel`` is echoed for channel actions."""
    if channel is None:
        return {
            fields.v: VERSION,
            fields.type: "response",
            fields.action: action,
            fields.id: request_id,
            fields.payload: payload,
            fields.ts: ts,
        }
    return {
        fields.v: VERSION,
        fields.type: "response",
        fields.action: action,
        fields.id: request_id,
        fields.channel: channel,
        fields.payload: payload,
        fields.ts: ts,
    }


class JsonAcks:
    """The two most frequent acks, ``ping`` and ``publish``, as JSON bytes joined from pieces.

    Byte for byte what ``orjson.dumps(response(...))`` gives (the tests compare them), without
    building two dicts and serialising them on every request: the envelope's keys and the action
    are encoded once per field mapping, the part after the payload's number (it holds only the
    millisecond ``ts``) once per millisecond, and only the id, channel and ``seq`` are encoded
    per request (ids and channels through ``orjson.dumps``: quotes, escapes, non-ASCII). In the
    mypyc build this costs a third of the dict-and-dumps way.
    """

    __slots__ = (
        "_ping",
        "_ping_tail",
        "_ping_tail_head",
        "_publish",
        "_publish_channel",
        "_publish_seq",
        "_tail",
        "_tail_ts",
        "_ts_key",
    )

    def __init__(self, fields: Fields = DEFAULT_FIELDS) -> None:
        def key(name: str) -> bytes:
            return orjson.dumps(name) + b":"

        def head(action: str) -> bytes:
            return (
                b"{" + key(fields.v) + b"%d," % VERSION + key(fields.type) + b'"response",'
                + key(fields.action) + orjson.dumps(action) + b"," + key(fields.id)
            )  # fmt: skip

        self._ping = head(Action.PING.value)
        self._publish = head(Action.PUBLISH.value)
        self._publish_channel = b"," + key(fields.channel)
        self._publish_seq = b"," + key(fields.payload) + b'{"seq":'
        self._ts_key = b"}," + key(fields.ts)
        ping_payload = b"," + key(fields.payload) + b'{"ts":'
        self._tail_ts = -1
        self._tail = b""
        """``},"ts":<ts>}`` for the millisecond ``_tail_ts``: every ack's end."""
        self._ping_tail = b""
        """``,"payload":{"ts":<ts>},"ts":<ts>}`` for ``_tail_ts``: a ping ack's end."""
        self._ping_tail_head = ping_payload

    def _stamp(self, ts: int) -> None:
        stamp = str(ts).encode()
        self._tail_ts = ts
        self._tail = self._ts_key + stamp + b"}"
        self._ping_tail = self._ping_tail_head + stamp + self._tail

    def ping(self, request_id: str, ts: int) -> bytes:
        """``response(request_id, "ping", {"ts": ts}, ts)``, encoded."""
        if ts != self._tail_ts:
            self._stamp(ts)
        return self._ping + _json_dumps(request_id) + self._ping_tail

    def publish(self, request_id: str, channel: str, seq: int, ts: int) -> bytes:
        """``response(request_id, "publish", {"seq": seq}, ts, channel=channel)``, encoded."""
        if ts != self._tail_ts:
            self._stamp(ts)
        parts = (
            self._publish, _json_dumps(request_id), self._publish_channel, _json_dumps(channel),
            self._publish_seq, str(seq).encode(), self._tail,
        )  # fmt: skip
        return b"".join(parts)


def error(
    request_id: str | None,
    code: ErrorCode | str,
    message: str,
    *,
    action: str | None = None,
    retry_after_ms: int | None = None,
    fields: Fields = DEFAULT_FIELDS,
) -> dict[str, Any]:
    """The one failed answer to a request (``id`` is ``None`` for an unreadable frame)."""
    body: dict[str, Any] = {"code": code.value if isinstance(code, ErrorCode) else code, "message": message}
    if retry_after_ms is not None:
        body["retry_after_ms"] = retry_after_ms
    frame: dict[str, Any] = {fields.v: VERSION, fields.type: "error", fields.id: request_id, fields.error: body}
    if action is not None:
        frame[fields.action] = action
    return frame


def event(
    action: str,
    channel: str,
    payload: Any,
    *,
    seq: int | None,
    ts: int,
    sender: str | None = None,
    fields: Fields = DEFAULT_FIELDS,
) -> dict[str, Any]:
    """A server-initiated frame: ``message``, ``presence.join``, ``presence.leave``, ``resync``,
    ``subscription.added`` or ``subscription.removed``.

    Only ``message`` events are part of the channel's sequence and carry ``seq`` (from 1, no
    gaps); presence and resync events are not numbered and go out without it (``seq=None``).
    """
    frame: dict[str, Any] = {
        fields.v: VERSION,
        fields.type: "event",
        fields.action: action,
        fields.channel: channel,
        fields.payload: payload,
    }
    if seq is not None:
        frame[fields.seq] = seq
    frame[fields.ts] = ts
    if action == "message":
        frame[fields.sender] = sender
    return frame
