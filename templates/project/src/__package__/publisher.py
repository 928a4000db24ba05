"""Publish from the application's backend straight through the broker: no server, no HTTP hop.

What Socket.IO's Redis emitter is to Socket.IO: any process that can reach this project's broker
(``WS_BROKER_URL``) publishes with the same adapter, channel options and idempotency window as a
server, so a message gets the same ``seq``, history, durability and ``msg_id`` deduplication as
a client publish, and reaches the subscribers on every instance::

    async with Publisher.from_env() as pub:
        result = await pub.publish("user:alice", {"title": "Invoice paid"}, msg_id="invoice-42")
        result.message.seq, result.duplicate    # a retry with the same msg_id: duplicate, not resent

``sender`` is ``None`` (the backend, not a user) and the namespace's ``client_publish`` does not
apply: the backend may publish to any channel whose namespace exists. With the broker down a call
raises :class:`~.broker.BrokerUnavailable` and nothing was stored or delivered: retry with the
same ``msg_id``.

:meth:`Publisher.disconnect`, :meth:`~Publisher.subscribe_user` and
:meth:`~Publisher.unsubscribe_user` send a control message (``control.py``) that every running
instance applies to its own connections of that user; like presence notices they are best effort
and only reach instances connected to the broker at that moment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import orjson

from .broker import Broker, BrokerError, Message, PublishResult, broker_from_settings
from .channels import InvalidChannel, NamespacePolicy, parse_channel
from .control import CONTROL_CHANNEL, ControlOp, DisconnectUser, SubscribeUser, UnsubscribeUser, encode
from .protocol import check_payload, publish_limit
from .settings import Settings

__all__ = ["InvalidChannel", "Publisher"]


def _ignore(_: Message) -> None:
    """The publisher subscribes to nothing; the broker never calls this."""


class Publisher:
    """A broker connection that publishes like a server would. Use as an async context manager.

    Raises (every method):
        InvalidChannel: the channel name is malformed or its namespace does not exist.
        ValueError: ``data`` is not JSON data, is larger than a publish may be, or a close code
            is outside 4000-4999.
        BrokerUnavailable: the broker did not take it; nothing was stored or delivered.
    """

    def __init__(self, settings: Settings | None = None, *, broker: Broker | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.broker = broker if broker is not None else broker_from_settings(self.settings)
        self._namespaces = {ns.name: ns for ns in self.settings.namespaces}
        self._max_bytes = publish_limit(self.settings.max_payload_bytes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Publisher:
        """A publisher configured like the servers: ``WS_BROKER_URL`` and the other ``WS_*``."""
        return cls(Settings.from_env(environ))

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connect to the broker (a broker that is down is retried in the background: calls
        meanwhile raise :class:`~.broker.BrokerUnavailable`)."""
        await self.broker.start(_ignore)

    async def aclose(self) -> None:
        await self.broker.aclose()

    # -- messages --------------------------------------------------------------------------

    async def publish(self, channel: str, data: Any, *, msg_id: str | None = None) -> PublishResult:
        """Publish ``data`` to ``channel``; ``result.message.seq`` is its place in the channel.

        ``msg_id`` makes a retry safe: within the idempotency window the broker answers the first
        publish's result with ``duplicate=True`` and delivers nothing again.
        """
        policy = self._policy(channel)
        self._check(data)
        return await self.broker.publish(channel, data, policy.options, sender=None, msg_id=msg_id)

    async def broadcast(
        self, channels: Sequence[str], data: Any, *, msg_id: str | None = None
    ) -> list[PublishResult | BrokerError]:
        """Publish the same ``data`` to every channel, in order; one result per channel.

        Every name is checked before anything is published (:class:`InvalidChannel` publishes
        nothing). A channel the broker refused has its :class:`~.broker.BrokerError` in the list
        instead of a result; retry those with the same ``msg_id`` (deduplicated per channel).
        """
        policies = [self._policy(channel) for channel in channels]
        self._check(data)
        results: list[PublishResult | BrokerError] = []
        for channel, policy in zip(channels, policies, strict=True):
            try:
                results.append(await self.broker.publish(channel, data, policy.options, sender=None, msg_id=msg_id))
            except BrokerError as exc:
                results.append(exc)
        return results

    # -- users (control messages to every instance) ------------------------------------------

    async def disconnect(self, user: str, code: int = 4000, reason: str = "") -> None:
        """Close every connection of ``user`` on every instance with ``code`` (4000-4999)."""
        if isinstance(code, bool) or not 4000 <= code <= 4999:
            raise ValueError("close code must be in 4000-4999")
        await self._control(DisconnectUser(self._user(user), code, reason[:120]))

    async def subscribe_user(self, user: str, channel: str) -> None:
        """Subscribe every connection of ``user`` to ``channel`` (server-side, on every instance)."""
        self._policy(channel)
        await self._control(SubscribeUser(self._user(user), channel))

    async def unsubscribe_user(self, user: str, channel: str) -> None:
        """Remove ``channel`` from every connection of ``user`` on every instance."""
        self._policy(channel)
        await self._control(UnsubscribeUser(self._user(user), channel))

    async def _control(self, op: ControlOp) -> None:
        await self.broker.announce(CONTROL_CHANNEL, encode(op))

    # -- checks ----------------------------------------------------------------------------

    def _policy(self, channel: str) -> NamespacePolicy:
        settings = self.settings
        _, policy = parse_channel(
            channel, self._namespaces, separator=settings.channel_separator, max_length=settings.max_channel_name
        )
        return policy

    def _check(self, data: Any) -> None:
        if not check_payload(data):
            raise ValueError("data must be JSON data (str keys, 64-bit integers, nested at most 64 deep)")
        if len(orjson.dumps(data)) > self._max_bytes:
            raise ValueError(f"data is larger than a publish may be ({self._max_bytes} bytes encoded)")

    @staticmethod
    def _user(user: str) -> str:
        if not isinstance(user, str) or not user:
            raise ValueError("user must be a non-empty string")
        return user
