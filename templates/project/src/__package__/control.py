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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

CONTROL_CHANNEL: Final = "$control"


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


ControlOp = DisconnectUser | SubscribeUser | UnsubscribeUser


def encode(op: ControlOp) -> dict[str, Any]:
    """The announce payload for ``op``."""
    if isinstance(op, DisconnectUser):
        return {"op": "disconnect", "user": op.user, "code": op.code, "reason": op.reason}
    if isinstance(op, SubscribeUser):
        return {"op": "subscribe", "user": op.user, "channel": op.channel}
    return {"op": "unsubscribe", "user": op.user, "channel": op.channel}


def decode(payload: Any) -> ControlOp:
    """Parse an announce payload from :data:`CONTROL_CHANNEL`.

    Raises:
        ValueError: not a control message this version understands (the caller logs and drops it).
    """
    if not isinstance(payload, dict):
        raise ValueError("control message is not an object")
    op, user = payload.get("op"), payload.get("user")
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
