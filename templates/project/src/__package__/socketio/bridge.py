"""Socket.IO events <-> the core's envelopes: the mapping, in one place. No I/O.

The core (``dispatch.py``) stays the only implementation of the protocol: a Socket.IO EVENT
becomes the JSON request envelope the native protocol would have carried, and every frame the
core produces (in its JSON codec) becomes a Socket.IO ACK or EVENT. The mapping:

* client ``emit(action, {channel?, payload?, msg_id?}, ack?)`` -> request ``action`` (``subscribe``,
  ``unsubscribe``, ``publish``, ``presence``, ``history``, ``rpc.<name>``, ``ping``, ``auth.refresh``);
  the first argument may also be just the channel name (then a second one is the payload);
* the request's response -> the ack called with the response's ``payload``; an error -> the ack
  called with ``{error: {code, message, retry_after_ms?}}``, or, when the emit had no ack, an
  ``error`` event with ``{code, message, action?, retry_after_ms?}``;
* server events -> ``emit(action, {channel, payload, ts, seq?, sender?})`` with ``action`` one of
  ``message``, ``presence.join``, ``presence.leave``, ``resync``, ``subscription.added``,
  ``subscription.removed``.

Broadcasts are translated once: fan-out hands the same ``bytes`` object to every subscriber
(``fanout.py``), and :meth:`Bridge.outbound` keeps the translation of each such object it has
seen, so the 1,000 Socket.IO subscribers of a channel share one ``42["message",...]`` (or one
:class:`~.attachments.Multipart` when the payload holds binary markers, ``attachments.py``).

With connection state recovery on (``recovery.py``), a ``message`` event that carries a ``seq``
gets its *offset* as last argument, ``"<channel> <seq>"``: derived from the event alone, so the
shared packet stays shared; socket.io-client keeps the last one it saw and sends it back when it
reconnects. :attr:`Bridge.offset` is the offset of the packet :meth:`Bridge.outbound` returned
last, which the link records (its write paths call ``outbound`` once per packet they write).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ..protocol import VERSION, Fields
from .attachments import MARKER, Multipart, to_binary
from .packets import encode_ack, encode_event

MAX_EVENT_NAME: Final = 64
_MAX_CACHED: Final = 1024
_MAX_CACHED_BYTES: Final = 4 * 1024 * 1024
_UNACKED_PREFIX: Final = "n"
"""Requests emitted without an ack get ids ``n<counter>``; acked ones their ack id, all digits."""


class Bridge:
    """The translation shared by every Socket.IO session of one server."""

    __slots__ = ("_cache", "_cached_bytes", "_fields", "offset", "offsets")

    def __init__(self, fields: Fields, *, offsets: bool = False) -> None:
        self._fields = fields
        self.offsets = offsets
        """Append offsets to ``message`` events with a ``seq`` (connection state recovery is on)."""
        self.offset: str | None = None
        """The offset in the packet :meth:`outbound` returned last; None: it carries none."""
        self._cache: dict[int, tuple[bytes, bytes | Multipart, str | None]] = {}
        """``id(event frame)`` -> (the frame, its Socket.IO packet, its offset). The entry holds the
        frame, so its id cannot be reused by another object while cached."""
        self._cached_bytes = 0

    def request(self, data: Any, request_id: str) -> bytes | str:
        """The JSON request envelope for an EVENT's ``data`` (its decoded array), or why not (str)."""
        if type(data) is not list or not data or type(data[0]) is not str:
            return 'an event is an array ["name", ...args]'
        action: str = data[0]
        if not 0 < len(action) <= MAX_EVENT_NAME:
            return f"event names are 1..{MAX_EVENT_NAME} characters"
        f = self._fields
        envelope: dict[str, Any] = {f.v: VERSION, f.type: "request", f.id: request_id, f.action: action}
        first = data[1] if len(data) > 1 else None
        if type(first) is str:
            envelope[f.channel] = first
            if len(data) > 2:
                envelope[f.payload] = data[2]
        elif type(first) is dict:
            for logical, wire in (("channel", f.channel), ("payload", f.payload), ("msg_id", f.msg_id)):
                value = first.get(logical)
                if value is not None:
                    envelope[wire] = value
        elif first is not None:
            return "the first argument is {channel?, payload?, msg_id?} or a channel name"
        return orjson.dumps(envelope)

    def outbound(self, frame: bytes) -> bytes | Multipart | None:
        """The Socket.IO packet for one frame of the core; None: nothing to send (the response to
        a request emitted without an ack). Binary markers in an event or a response's payload
        make it a BINARY_EVENT / BINARY_ACK (:class:`~.attachments.Multipart`)."""
        cached = self._cache.get(id(frame))
        if cached is not None and cached[0] is frame:
            self.offset = cached[2]
            return cached[1]
        self.offset = None
        f = self._fields
        obj = orjson.loads(frame)
        kind = obj.get(f.type)
        if kind == "event":
            body: dict[str, Any] = {
                "channel": obj.get(f.channel),
                "payload": obj.get(f.payload),
                "ts": obj.get(f.ts),
            }
            seq = obj.get(f.seq)
            if seq is not None:
                body["seq"] = seq
            if f.sender in obj:
                body["sender"] = obj[f.sender]
            action = obj.get(f.action)
            offset = None
            if seq is not None and self.offsets and action == "message":
                offset = self.offset = f"{body['channel']} {seq}"
                packet = encode_event(action, body, offset)
            else:
                packet = encode_event(action, body)
            translated = to_binary(packet) if MARKER in frame else packet
            self._remember(frame, translated, offset)
            return translated
        request_id = obj.get(f.id)
        ack = int(request_id) if type(request_id) is str and request_id.isdigit() else None
        if kind == "response":
            if ack is None:
                return None
            answer = encode_ack(ack, obj.get(f.payload))
            return to_binary(answer) if MARKER in frame else answer
        problem = obj.get(f.error)
        if ack is not None:
            return encode_ack(ack, {"error": problem})
        detail = dict(problem) if isinstance(problem, dict) else {"code": "internal", "message": str(problem)}
        action = obj.get(f.action)
        if action is not None:
            detail["action"] = action
        return encode_event("error", detail)

    def _remember(self, frame: bytes, packet: bytes | Multipart, offset: str | None) -> None:
        if len(self._cache) >= _MAX_CACHED or self._cached_bytes > _MAX_CACHED_BYTES:
            self._cache.clear()
            self._cached_bytes = 0
        self._cache[id(frame)] = (frame, packet, offset)
        self._cached_bytes += len(frame) + (len(packet) if isinstance(packet, bytes) else packet.size)
