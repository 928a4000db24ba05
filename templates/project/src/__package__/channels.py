"""Channels: names, per-namespace policy and local membership. No I/O.

A channel name is ``<namespace><separator><name>`` (``room:lobby``, ``user:42``). The namespace
decides everything about the channel (who may subscribe or publish, presence, history,
backpressure), so the policy lives in one :class:`NamespacePolicy` per namespace, rendered into
``settings.py`` from the spec.

:class:`ChannelRegistry` is this instance's view of who is subscribed to what. It tells the glue
when a channel gets its first local member (subscribe at the broker) and loses its last one
(unsubscribe), which is exactly the broker seam's contract.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from .broker.base import ChannelOptions


class ChannelAuth(enum.StrEnum):
    PUBLIC = "public"
    """Anyone connected may subscribe (and publish when ``client_publish``)."""
    AUTHENTICATED = "authenticated"
    """Any connection with a verified identity."""
    PRIVATE = "private"
    """Only the user whose id is the channel name (``user:<sub>``)."""
    HOOK = "hook"
    """The application's subscribe hook decides, per user and channel (``hooks.py``). Needs a
    verified identity; publish, presence and history need a live subscription (the hook's yes)."""


class Backpressure(enum.StrEnum):
    """What happens when a connection's outbound queue is full."""

    DROP_OLDEST = "drop_oldest"
    COALESCE = "coalesce"
    """Keep only the newest queued event of the channel (tickers, positions)."""
    DISCONNECT = "disconnect"
    """Close the slow consumer with 4009; it resumes from history on reconnect."""


@dataclass(frozen=True, slots=True)
class NamespacePolicy:
    """Everything the server decides per namespace."""

    name: str
    auth: ChannelAuth = ChannelAuth.PUBLIC
    client_publish: bool = True
    presence: bool = False
    history_size: int = 0
    history_ttl_s: int = 0
    durable: bool = False
    backpressure: Backpressure = Backpressure.DROP_OLDEST

    @property
    def options(self) -> ChannelOptions:
        """Storage policy handed to the broker."""
        return ChannelOptions(
            durable=self.durable, history_size=self.history_size, history_ttl_s=self.history_ttl_s
        )

    @property
    def history_enabled(self) -> bool:
        return self.history_size > 0


# Printable ASCII without whitespace or the NATS wildcards, so a name maps onto every broker.
_NAME_RE = re.compile(r"[!-~]+")
_FORBIDDEN_CHARS = frozenset("*>")


class InvalidChannel(ValueError):
    """The channel name is malformed or its namespace does not exist."""


@dataclass(frozen=True, slots=True)
class ChannelName:
    """A validated channel name split at the first separator."""

    full: str
    namespace: str
    name: str


def parse_channel(
    channel: str, namespaces: Mapping[str, NamespacePolicy], *, separator: str = ":", max_length: int = 128
) -> tuple[ChannelName, NamespacePolicy]:
    """Split and validate ``channel`` against the configured namespaces.

    Raises:
        InvalidChannel: with a message fit for the client.
    """
    if not 0 < len(channel) <= max_length:
        raise InvalidChannel(f"channel must be 1..{max_length} characters")
    if not _NAME_RE.fullmatch(channel) or _FORBIDDEN_CHARS.intersection(channel):
        raise InvalidChannel("channel must be printable ASCII without spaces, '*' or '>'")
    namespace, sep, name = channel.partition(separator)
    if not sep or not namespace or not name:
        raise InvalidChannel(f"channel must look like <namespace>{separator}<name>")
    policy = namespaces.get(namespace)
    if policy is None:
        raise InvalidChannel(f"unknown namespace {namespace!r}")
    return ChannelName(channel, namespace, name), policy


M = TypeVar("M")


class ChannelRegistry(Generic[M]):
    """Which local members (connections) are in which channel.

    Members are any hashable objects; the server uses its connection objects so that fan-out is
    one dict lookup. Iteration order is insertion order, which keeps tests deterministic.
    """

    def __init__(self) -> None:
        self._members: dict[str, dict[M, None]] = {}

    def join(self, channel: str, member: M) -> bool:
        """Add ``member``; True when it is the channel's first local member (subscribe at the broker)."""
        members = self._members.setdefault(channel, {})
        first = not members
        members[member] = None
        return first

    def leave(self, channel: str, member: M) -> bool:
        """Remove ``member``; True when the channel has no local member left. Idempotent."""
        members = self._members.get(channel)
        if members is None or member not in members:
            return False
        del members[member]
        if members:
            return False
        del self._members[channel]
        return True

    def members(self, channel: str) -> Iterable[M]:
        """The channel's local members (a snapshot, safe to iterate while members leave)."""
        members = self._members.get(channel)
        return tuple(members) if members else ()

    def channels(self) -> list[str]:
        return list(self._members)

    def __contains__(self, channel: object) -> bool:
        return channel in self._members

    def __len__(self) -> int:
        return len(self._members)
