"""The Protocol Buffers codec: envelope dicts <-> ``Envelope`` messages (``proto/<package>/wire.proto``).

The rest of the server and the Python client build and read envelopes as dicts keyed by the wire
field names (:class:`~.protocol.Fields`); this module is the one place that maps such a dict to the
generated ``Envelope`` type and back, so dispatch, fan-out and the client are the same code for
every codec. Serialization is the official ``protobuf`` runtime's (its upb C backend): nothing here
reads or writes the wire format by hand.

The payload travels as one JSON document in the ``bytes payload`` field: no namespace declares a
payload schema, payloads are whatever JSON data the JSON codec carries, and this keeps 64-bit
integers exact and costs one ``orjson`` call (``google.protobuf.Struct`` turns every number into a
double and converts field by field in Python; bench/RESULTS.md has the measurement).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson
from google.protobuf.message import DecodeError

from .wire_pb2 import Envelope

if TYPE_CHECKING:
    from .protocol import Fields

FRAME_TYPES: Final[dict[str, int]] = {"request": 1, "response": 2, "error": 3, "event": 4}
"""``FrameType`` numbers by the JSON codec's ``type`` string (the .proto's enum)."""
FRAME_TYPE_NAMES: Final[dict[int, str]] = {number: name for name, number in FRAME_TYPES.items()}
_RESPONSE: Final = FRAME_TYPES["response"]
_ERROR: Final = FRAME_TYPES["error"]
_EVENT: Final = FRAME_TYPES["event"]

_dumps: Final = orjson.dumps
_loads: Final = orjson.loads


class ProtobufFrameError(ValueError):
    """The bytes are not an ``Envelope``, or its payload is not a JSON document."""


def pack(obj: dict[str, Any], fields: Fields) -> bytes:
    """Serialize an envelope dict (keys: ``fields``' wire names) as an ``Envelope``.

    Raises:
        KeyError, TypeError, ValueError: ``obj`` is not an envelope (a bug of the caller: the
            server and the client only pack envelopes they built).
    """
    env = Envelope()
    get = obj.get
    version = get(fields.v)
    if version is not None:
        env.v = version
    kind = get(fields.type)
    if kind is not None:
        env.type = FRAME_TYPES[kind]  # type: ignore[assignment]
    action = get(fields.action)
    if action is not None:
        env.action = action
    request_id = get(fields.id)
    if request_id is not None:
        env.id = request_id
    channel = get(fields.channel)
    if channel is not None:
        env.channel = channel
    payload = get(fields.payload)
    if payload is not None:
        env.payload = _dumps(payload)
    seq = get(fields.seq)
    if seq is not None:
        env.seq = seq
    ts = get(fields.ts)
    if ts is not None:
        env.ts = ts
    sender = get(fields.sender)
    if sender is not None:
        env.sender = sender
    msg_id = get(fields.msg_id)
    if msg_id is not None:
        env.msg_id = msg_id
    body = get(fields.error)
    if body is not None:
        error = env.error
        error.code = body["code"]
        error.message = body["message"]
        retry = body.get("retry_after_ms")
        if retry is not None:
            error.retry_after_ms = retry
    return env.SerializeToString()


def unpack(data: bytes, fields: Fields) -> dict[str, Any]:
    """Parse one ``Envelope`` into the dict :func:`pack` takes. Unset fields are absent keys, so
    :func:`~.protocol.parse_envelope` validates it exactly as a JSON frame (a missing ``v`` or
    ``type`` is ``invalid_envelope``), except the keys the server's frames always hold, which come
    back as ``None``: an error's ``id``, a response's ``payload``, a message event's ``sender``.
    So ``unpack(pack(frame))`` is ``frame`` for every frame :mod:`.protocol` builds. Unknown fields
    are ignored, as protobuf's compatibility rules want: a newer peer may add fields.

    Raises:
        ProtobufFrameError: not an ``Envelope`` (garbage, a truncated or over-long varint, invalid
            UTF-8 in a string, nesting too deep), or a payload that is not JSON.
    """
    try:
        env = Envelope.FromString(data)
    except DecodeError as exc:
        raise ProtobufFrameError(str(exc) or "not an Envelope") from exc
    obj: dict[str, Any] = {}
    if env.v:
        obj[fields.v] = env.v
    kind = env.type
    if kind:
        obj[fields.type] = FRAME_TYPE_NAMES.get(kind, kind)
        if kind == _ERROR:
            obj[fields.id] = None
        elif kind == _RESPONSE:
            obj[fields.payload] = None
        elif kind == _EVENT and env.action == "message":
            obj[fields.sender] = None
    if env.action:
        obj[fields.action] = env.action
    if env.HasField("id"):
        obj[fields.id] = env.id
    if env.HasField("channel"):
        obj[fields.channel] = env.channel
    if env.payload:
        try:
            obj[fields.payload] = _loads(env.payload)
        except orjson.JSONDecodeError as exc:
            raise ProtobufFrameError(f"payload is not JSON: {exc}") from exc
    if env.HasField("seq"):
        obj[fields.seq] = env.seq
    if env.ts:
        obj[fields.ts] = env.ts
    if env.HasField("sender"):
        obj[fields.sender] = env.sender
    if env.HasField("msg_id"):
        obj[fields.msg_id] = env.msg_id
    if env.HasField("error"):
        error = env.error
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.HasField("retry_after_ms"):
            body["retry_after_ms"] = error.retry_after_ms
        obj[fields.error] = body
    return obj
