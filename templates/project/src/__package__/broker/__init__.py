"""Message brokers behind one seam; :func:`create_broker` picks one by URL scheme.

``memory://`` needs nothing. ``redis://`` and ``nats://`` import their client library only when
chosen, so a single-instance project does not need redis or nats-py installed.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from .base import (
    Broker,
    BrokerBusy,
    BrokerError,
    BrokerUnavailable,
    ChannelLimitReached,
    ChannelOptions,
    History,
    Message,
    PresenceMember,
    PublishNow,
    PublishResult,
    SyncPublisher,
)
from .memory import MemoryBroker

__all__ = [
    "Broker",
    "BrokerBusy",
    "BrokerError",
    "BrokerUnavailable",
    "ChannelLimitReached",
    "ChannelOptions",
    "History",
    "MemoryBroker",
    "Message",
    "PresenceMember",
    "PublishNow",
    "PublishResult",
    "SyncPublisher",
    "create_broker",
]

_ADAPTERS = {"redis": ("redis", "RedisBroker"), "rediss": ("redis", "RedisBroker"), "nats": ("nats", "NatsBroker")}


def create_broker(url: str, **options: Any) -> Broker:
    """The broker for ``url``; ``options`` (such as ``idempotency_window_s``) go to its constructor.

    For redis:// and nats://, ``circuit_breaker`` (a dict of :class:`.breaker.BreakerBroker`
    arguments: ``failure_threshold``, ``reset_timeout_s``, ``half_open_max_calls``) configures the
    breaker wrapped around the adapter (and ``health_interval_s``, its active health check).
    ``op_timeout_s`` (deadline of one operation) and ``pool_size`` (Redis connections) apply to
    the networked adapters only; the URL's query options win over them.

    Raises:
        ValueError: unknown scheme.
    """
    scheme = url.partition("://")[0].lower()
    breaker = options.pop("circuit_breaker", {})
    if scheme == "memory":
        for remote_only in ("op_timeout_s", "pool_size"):
            options.pop(remote_only, None)
        return MemoryBroker(**options)
    if scheme == "nats":
        options.pop("pool_size", None)  # one multiplexed connection
    adapter = _ADAPTERS.get(scheme)
    if adapter is None:
        raise ValueError(f"unsupported broker URL scheme {scheme!r} (memory://, redis://, nats://)")
    # Imported by name so the redis / nats client libraries load only when configured.
    module = importlib.import_module(f".{adapter[0]}", __package__)
    broker = cast(Broker, getattr(module, adapter[1])(url, **options))
    if breaker is None:
        return broker
    # A remote broker is always behind a circuit breaker (pass circuit_breaker=None to opt out).
    from .breaker import BreakerBroker

    return BreakerBroker(broker, **breaker)
