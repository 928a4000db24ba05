"""Message brokers behind one seam; :func:`create_broker` picks one by URL scheme.

``memory://`` needs nothing. ``redis://`` and ``nats://`` import their client library only when
chosen, so a single-instance project does not need redis or nats-py installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, cast

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
    PublishResult,
)
from .memory import MemoryBroker

if TYPE_CHECKING:
    from ..settings import Settings

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
    "PublishResult",
    "broker_from_settings",
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


def broker_from_settings(settings: Settings) -> Broker:
    """The broker a server with ``settings`` uses: the same adapter, caps, idempotency window,
    deadlines and circuit breaker. The publisher library (``publisher.py``) builds its broker
    here too, so a publish from a backend process is stored exactly like a server's."""
    memory_caps = (
        {
            "max_channels": settings.max_channels,
            "max_channels_per_user": settings.max_channels_per_user,
            "channel_idle_s": settings.channel_idle_s,
        }
        if settings.broker_url.startswith("memory:")
        else {}
    )
    return create_broker(
        settings.broker_url,
        **memory_caps,
        idempotency_window_s=settings.idempotency_window_s,
        op_timeout_s=settings.broker_op_timeout_s,
        pool_size=settings.broker_pool_size,
        circuit_breaker={
            "failure_threshold": settings.breaker_failure_threshold,
            "reset_timeout_s": settings.breaker_reset_timeout_s,
            "half_open_max_calls": settings.breaker_half_open_max_calls,
            "health_interval_s": settings.broker_health_interval_s,
        },
    )
