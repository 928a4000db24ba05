"""The architecture spec: step 2's output and the templates' only input.

Every decision is a field here *and* a :class:`Decision` row with the rationale that cites the
requirement (or memory convention) behind it. The spec is written to each generated project as
``wsforge.yaml``; ``review`` and ``regenerate`` read it back with :func:`load_spec`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ._yaml import load_model
from .errors import SpecError
from .requirements import ExistingApp, Requirements


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Codec(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"
    PROTOBUF = "protobuf"
    """Envelope and payloads as Protocol Buffers messages (``proto/<package>.proto``, rendered from
    the spec); offered only when step 2 picks it, because every client needs the generated types."""


class Transport(StrEnum):
    WEBSOCKETS = "websockets"
    PICOWS = "picows"


class ScalingStrategy(StrEnum):
    SINGLE = "single"
    REDIS_PUBSUB = "redis_pubsub"
    REDIS_STREAMS = "redis_streams"
    NATS = "nats"
    RABBITMQ = "rabbitmq"
    """RabbitMQ: a stream keeps each channel's ordered, durable history; see ``broker/rabbitmq.py``."""


class ChannelAuth(StrEnum):
    PUBLIC = "public"
    """Anyone connected may subscribe (and publish if ``client_publish``)."""
    AUTHENTICATED = "authenticated"
    """Any connection with a verified identity."""
    PRIVATE = "private"
    """Only the user whose id is the channel name (``user:<sub>``)."""
    HOOK = "hook"
    """The application's subscribe hook decides, per user and channel (needs ``hooks.subscribe``)."""


class Backpressure(StrEnum):
    DROP_OLDEST = "drop_oldest"
    COALESCE = "coalesce"
    """Keep only the newest event per channel in the queue (tickers, positions)."""
    DISCONNECT = "disconnect"
    """Close the slow consumer with 4009; it recovers from history on reconnect."""


class Source(StrEnum):
    TABLE = "table"
    MEMORY = "memory"
    REQUIREMENT = "requirement"


class Decision(_Model):
    """One architectural decision with the reason for it."""

    key: str
    value: Any
    rationale: str
    source: Source = Source.TABLE
    alternatives: dict[str, str] = Field(
        default_factory=dict, description="Options step 2 considered and rejected: option -> why not."
    )


class ProtocolSpec(_Model):
    version: int = 1
    codecs: list[Codec]
    """Codecs offered, in the server's preference order; the first is the default."""
    subprotocols: list[str]
    path: str = "/ws"


EngineIOTransport = Literal["polling", "websocket"]


class ProtocolLayer(StrEnum):
    NATIVE = "native"
    SOCKETIO = "socketio"


class SocketIOSpec(_Model):
    """Socket.IO v5 / Engine.IO v4 as a second face of the same core (issue 24).

    When ``enabled``, the server answers Socket.IO clients at ``path`` beside the native endpoint:
    one dispatch, one channel model, one set of limits; client actions map onto Socket.IO events
    (the protocol document lists them). Step 2 turns it on (``protocol.layer``).
    """

    enabled: bool = False
    path: str = "/socket.io/"
    transports: list[Literal["polling", "websocket"]] = ["polling", "websocket"]  # pydantic copies defaults
    """Engine.IO transports served: long-polling first (it gets through any proxy), upgraded to WebSocket."""
    ping_interval_s: float = Field(default=25.0, gt=0)
    """Engine.IO's own heartbeat: the server pings, the client must pong within ``ping_timeout_s``."""
    ping_timeout_s: float = Field(default=20.0, gt=0)
    recovery_window_s: float = Field(default=120.0, ge=0)
    """Connection state recovery: how long a disconnected session's id and offsets stay resumable."""


class EnvelopeSpec(_Model):
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


class NamespaceSpec(_Model):
    """One channel namespace and its policy (also the shape of a memory ``namespaces`` convention)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    auth: ChannelAuth
    client_publish: bool = True
    presence: bool = False
    history_size: int = Field(default=0, ge=0, le=1_000_000)
    history_ttl_s: int = Field(default=0, ge=0)
    durable: bool = False
    backpressure: Backpressure = Backpressure.DROP_OLDEST
    description: str = ""


class ChannelsSpec(_Model):
    separator: str = Field(default=":", min_length=1, max_length=1)
    namespaces: list[NamespaceSpec] = Field(min_length=1)
    max_channel_name: int = 128


class ScalingSpec(_Model):
    strategy: ScalingStrategy
    broker_url: str
    instances: int = Field(ge=1)
    connections_per_instance: int = Field(ge=1)
    deliveries_per_instance: int = Field(ge=1)
    """Capacity figures the plan was computed from, per server process (one core): an instance
    with ``workers`` processes carries ``workers`` times as much."""
    expected_deliveries_per_second: int = Field(ge=0)
    workers: int = Field(default=1, ge=1, le=256)
    """Server processes per instance (``--workers`` / ``WS_WORKERS``), each on its own core,
    sharing the port (``SO_REUSEPORT``) and nothing else but the broker."""

    @property
    def cores(self) -> int:
        """Server processes in the whole plan: ``instances`` x ``workers``."""
        return self.instances * self.workers


TokenSource = Literal["header", "subprotocol", "query", "cookie"]
DEFAULT_TOKEN_SOURCES: tuple[TokenSource, ...] = ("header", "subprotocol", "query")


class AuthSpec(_Model):
    mode: Literal["jwt", "cookie", "none"]
    algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    audience: str | None = None
    issuer: str | None = None
    secret_env: str = "WS_JWT_SECRET"  # noqa: S105 - the name of an env var, not a secret
    leeway_s: int = 5
    token_sources: list[TokenSource] = Field(default_factory=lambda: list(DEFAULT_TOKEN_SOURCES))
    cookie_name: str = "wsforge_session"
    anonymous_namespaces_allowed: bool = False
    """With ``mode: none`` every connection is anonymous and only public namespaces exist."""


class LimitsSpec(_Model):
    max_payload_bytes: int = Field(ge=128)
    rate_per_s: float = Field(gt=0)
    rate_burst: int = Field(ge=1)
    rate_violations_before_close: int = Field(default=20, ge=1)
    max_connections_per_ip: int = Field(ge=1)
    max_connections_total: int = Field(ge=1)
    outbound_queue_size: int = Field(ge=1)
    max_subscriptions_per_connection: int = Field(default=100, ge=1)
    bad_frames_before_close: int = Field(default=10, ge=1)
    idempotency_window_s: int = Field(default=120, ge=0)


class HeartbeatSpec(_Model):
    interval_s: float = Field(gt=0)
    timeout_s: float = Field(gt=0)


class ReconnectSpec(_Model):
    base_s: float = Field(gt=0)
    cap_s: float = Field(gt=0)
    jitter: Literal["full", "equal", "none"] = "full"
    reset_after_s: float = Field(gt=0)
    offline_queue_size: int = Field(default=1000, ge=0)


class CircuitBreakerSpec(_Model):
    failure_threshold: int = Field(ge=1)
    reset_timeout_s: float = Field(gt=0)
    half_open_max_calls: int = Field(default=1, ge=1)
    op_timeout_ms: int = Field(default=1000, ge=10)
    """Deadline of one broker operation; a slower broker counts as unavailable."""
    health_interval_s: float = Field(default=2.0, gt=0)
    """How often an active round trip to the broker is checked (``/readyz`` reflects the last one)."""


class ShutdownSpec(_Model):
    grace_s: float = Field(default=10.0, gt=0)


class ServerApiSpec(_Model):
    """The HTTP server API: how the application's backend publishes, broadcasts and manages users.

    It has its own listener, on loopback unless configured otherwise, so it is never exposed with
    the WebSocket port by accident; keys come from ``keys_env`` (comma-separated, rotated by adding
    the new key before removing the old). No key configured means the API stays off.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8766, ge=0, le=65535)
    keys_env: str = "WS_API_KEYS"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch: int = Field(default=100, ge=1, le=10_000)


class PublisherKind(StrEnum):
    NONE = "none"
    BROKER = "broker"
    """A library that publishes straight through the shared broker (no HTTP hop, no server)."""
    HTTP = "http"
    """A client of the server API (projects on the in-memory broker share nothing else)."""


class PublisherSpec(_Model):
    kind: PublisherKind = PublisherKind.NONE


class HookSpec(_Model):
    enabled: bool = False
    timeout_ms: int = Field(default=1000, ge=10, le=30_000)


class HooksSpec(_Model):
    """Event hooks to the application (HTTP POST), Centrifugo's proxy model.

    connect/subscribe/publish fail closed (the client gets an error); disconnect is fire-and-forget.
    URLs come from the environment (``WS_HOOK_<NAME>_URL``); a breaker guards all of them.
    """

    connect: HookSpec = Field(default_factory=HookSpec)
    subscribe: HookSpec = Field(default_factory=HookSpec)
    publish: HookSpec = Field(default_factory=HookSpec)
    disconnect: HookSpec = Field(default_factory=HookSpec)
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout_s: float = Field(default=10.0, gt=0)

    def any_enabled(self) -> bool:
        return any(h.enabled for h in (self.connect, self.subscribe, self.publish, self.disconnect))


class DeploySpec(_Model):
    """How the planned instances are deployed: ``deploy/docker-compose.yml`` always, Kubernetes
    manifests (``deploy/kubernetes/``) when ``kubernetes`` is on."""

    kubernetes: bool = False
    cpu_millicores: int = Field(default=1000, ge=100)
    """CPU request per pod (one core per worker). No CPU limit is set: CFS throttling of a busy
    event loop shows up as latency spikes for every connection of the pod."""
    memory_mib: int = Field(default=512, ge=64)
    """Memory request and limit per pod, from the planned connections per worker."""
    prestop_s: float = Field(default=5.0, ge=0, le=120)
    """Sleep in the preStop hook: the pod leaves the Service's endpoints before SIGTERM drains it."""
    termination_grace_s: int = Field(default=20, ge=1)
    """``terminationGracePeriodSeconds``: must exceed ``prestop_s`` + ``shutdown.grace_s``."""
    max_replicas: int = Field(default=3, ge=1)
    """The HorizontalPodAutoscaler's ceiling (its floor is ``scaling.instances``)."""
    target_cpu_percent: int = Field(default=70, ge=10, le=100)
    """The autoscaler's CPU target: the headroom step 2 planned capacity at."""


HostApp = ExistingApp
"""The team's app the endpoint may be mounted in: the requirement's own choices."""


class HostSpec(_Model):
    """Where the WebSocket endpoint runs in production: its own server, or inside the team's app.

    ``mounted``: the same core (dispatch, channels, limits, broker, server API) runs behind an ASGI
    WebSocket endpoint of the host app (``transport/asgi.py``, ``asgi.py``), served by the host's
    ASGI server. The standalone entry point (``python -m <package>``) is rendered either way.
    """

    app: HostApp = HostApp.NONE
    mounted: bool = False
    asgi_server: Literal["uvicorn", "daphne"] = "uvicorn"
    """The ASGI server the README, deploy files and tests run the host app with."""
    session_auth: bool = False
    """Django: the upgrade is authenticated by Django's session cookie (``django.contrib.auth``),
    with the JWT as today for clients that hold one instead."""


class ArchitectureSpec(_Model):
    """The whole architecture, as the templates see it."""

    spec_version: int = 1
    project: str
    package: str
    wsforge_version: str
    use_cases: list[str]
    protocol: ProtocolSpec
    envelope: EnvelopeSpec = Field(default_factory=EnvelopeSpec)
    channels: ChannelsSpec
    transport: Transport
    scaling: ScalingSpec
    auth: AuthSpec
    allowed_origins: list[str]
    limits: LimitsSpec
    heartbeat: HeartbeatSpec
    reconnect: ReconnectSpec
    circuit_breaker: CircuitBreakerSpec
    shutdown: ShutdownSpec = Field(default_factory=ShutdownSpec)
    server_api: ServerApiSpec = Field(default_factory=ServerApiSpec)
    publisher: PublisherSpec = Field(default_factory=PublisherSpec)
    hooks: HooksSpec = Field(default_factory=HooksSpec)
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    host: HostSpec = Field(default_factory=HostSpec)
    socketio: SocketIOSpec = Field(default_factory=SocketIOSpec)
    decisions: list[Decision] = Field(default_factory=list)
    known_issues: list[str] = Field(default_factory=list)
    requirements: Requirements

    def decision(self, key: str) -> Decision | None:
        return next((d for d in self.decisions if d.key == key), None)


def dump_spec(spec: ArchitectureSpec) -> str:
    """YAML for ``wsforge.yaml``: stable key order, no Python tags."""
    data = spec.model_dump(mode="json")
    header = "# Architecture spec written by wsforge. `wsforge review` audits it; edits are honoured by `wsforge regenerate`.\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def load_spec(path: Path) -> ArchitectureSpec:
    """Read ``wsforge.yaml``.

    Raises:
        SpecError: naming the file, line and field.
    """
    return load_model(path, ArchitectureSpec, SpecError, what="spec")[0]
