"""Step 2: requirements (+ memory conventions) -> :class:`ArchitectureSpec`, by decision tables.

Each ``_decide_*`` function reads one table below, returns the value and a :class:`Decision` whose
rationale names the requirement that drove it. Memory conventions are applied last, in one place
(:func:`_apply_conventions`, driven by the one table :data:`CONVENTIONS`), so every override is
visible as ``source: memory`` with the old value.
The pipeline passes the knowledge index in (from its ``ContextProvider``); called without one,
:func:`design` reads the index shipped inside wsforge, its only I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import __version__
from .context import packaged_knowledge
from .errors import SpecError
from .memory import Conventions, MemoryEntry
from .requirements import (
    PUSH_USE_CASES,
    AuthMode,
    ClientEnvironment,
    ClientProtocol,
    Durability,
    ExistingApp,
    LatencyClass,
    MessagePattern,
    PublisherRole,
    Requirements,
    Serialization,
    UseCase,
)
from .spec import (
    ArchitectureSpec,
    AuthSpec,
    Backpressure,
    ChannelAuth,
    ChannelsSpec,
    CircuitBreakerSpec,
    Codec,
    Decision,
    DeploySpec,
    EnvelopeSpec,
    HeartbeatSpec,
    HookSpec,
    HooksSpec,
    HostApp,
    HostSpec,
    LimitsSpec,
    NamespaceSpec,
    ProtocolLayer,
    ProtocolSpec,
    PublisherKind,
    PublisherSpec,
    ReconnectSpec,
    ScalingSpec,
    ScalingStrategy,
    ServerApiSpec,
    ShutdownSpec,
    SocketIOSpec,
    Source,
    TokenSource,
    Transport,
)

# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    connections: int
    deliveries_per_s: int
    source: str


# What one instance (one core) sustains with every feature on; step 2 plans at 70 % of it.
# Deliveries: bench/RESULTS.md, fan-out to 1,000 subscribers, deliveries per server-CPU-second of the
# generated chat server (run 20261127T225237Z: websockets 72,467; picows 513,820). Two later runs on
# other machines measured 69,731 / 583,300 (20261128T080259Z) and 87,063 / 551,002 (20261128T102405Z),
# with a load generator that was itself the limit for picows. Run 20261128T125612Z, whose generator
# counts deliveries per read and no longer limits it, measured 98,252 / 1,112,368 on an AMD EPYC VM,
# and run 20261128T145953Z 77,148 / 828,535 on the same kind of VM on a slower day.
# The figures below sit within (websockets) or under (picows) that spread, so they stay: the picows
# one is the lowest measured, and the faster generator has not been run on the Intel machine.
# Connections: that run held 10,000 JWT-verified idle connections with 1.5 s heartbeats at 19.8 KiB
# (websockets) and 15.4 KiB (picows) RSS each; the figures below extrapolate that linearly (about
# 0.4 / 0.6 GiB) and have not been measured at that count.
CAPACITY: dict[Transport, Capacity] = {
    Transport.WEBSOCKETS: Capacity(20_000, 72_000, "bench/RESULTS.md, websockets transport"),
    Transport.PICOWS: Capacity(40_000, 510_000, "bench/RESULTS.md, picows transport"),
}
HEADROOM = 0.7

# The same core mounted in an ASGI app (``transport/asgi.py``) behind uvicorn, one worker, every
# feature on: bench/RESULTS.md, "The ASGI target" (2026-12-07, two runs, 2 repeats each). Fan-out
# to 1,000 measured 63,680 and 85,114 deliveries per server-CPU-second (the standalone websockets
# transport 42,627 / 47,335 in the same runs); the lower is taken. Idle connections cost 29.5 KiB of
# RSS each against websockets' 20.0, so the connection figure is websockets' 20,000 scaled by
# 20.0 / 29.5 and rounded down.
ASGI_CAPACITY = Capacity(13_000, 63_000, "bench/RESULTS.md, ASGI target (uvicorn)")
RABBITMQ_SEQUENCER_PUBLISHES_PER_S = 10_000
"""Publishes per second one RabbitMQ deployment's sequencer carries (bench/RESULTS.md, "RabbitMQ:
publish throughput"): it spends about 44 us of one instance's CPU per publish, and that instance
serves its own connections too, so half a core's worth is planned."""
MOUNT_MAX_CORE_FACTOR = 2
"""Mounting in the host app is chosen while it needs at most this many times the cores the
standalone server would (or two more, for small plans): one deployment instead of two is worth
that, a fleet of extra pods is not."""

# Kubernetes sizing, per worker (one core). Memory: idle connections measured 15.6 KiB (picows) and
# 20.7 KiB (websockets) of server RSS each (bench/RESULTS.md, idle row); an active connection also
# holds its outbox and read buffers, so the request budgets three times the idle figure of the
# heavier transport, plus the interpreter, the broker client and the code.
MEMORY_PER_CONNECTION_KIB = 64
MEMORY_BASE_MIB = 128
PRESTOP_S = 5.0
"""Long enough for kube-proxy and ingress controllers to drop the pod from their endpoints before
SIGTERM starts the drain (they watch the API asynchronously; a few seconds is the usual figure)."""
AUTOSCALE_CEILING = 3
"""The HorizontalPodAutoscaler may grow to this many times the planned replicas before the plan
itself (wsforge.yaml's requirements) should be revisited."""

# Transport: picows when one websockets instance would need more than this many instances' worth.
TRANSPORTS_AVAILABLE: frozenset[Transport] = frozenset({Transport.WEBSOCKETS, Transport.PICOWS})

# (latency class) -> heartbeat interval, timeout. Kept below common proxy idle timeouts (60 s).
HEARTBEAT_TABLE: dict[LatencyClass, tuple[float, float]] = {
    LatencyClass.REALTIME: (15.0, 10.0),
    LatencyClass.INTERACTIVE: (25.0, 20.0),
}
# Battery- and radio-bound clients: fewer wake-ups, longer timeout.
HEARTBEAT_CONSTRAINED = (30.0, 20.0)

# (latency class) -> reconnect base, cap, reset-after (seconds).
RECONNECT_TABLE: dict[LatencyClass, tuple[float, float, float]] = {
    LatencyClass.REALTIME: (0.5, 30.0, 60.0),
    LatencyClass.INTERACTIVE: (1.0, 60.0, 60.0),
}
# Big fleets reconnect in waves after a deploy; a larger base and cap spread the herd.
RECONNECT_FLEET = (2.0, 120.0, 120.0)
FLEET_SIZE = 50_000

# (client environment) -> connections per IP. NAT'd offices need headroom for browsers.
CONNECTIONS_PER_IP: dict[ClientEnvironment, int] = {
    ClientEnvironment.BROWSER: 50,
    ClientEnvironment.MOBILE: 20,
    ClientEnvironment.IOT: 4,
    ClientEnvironment.SERVER: 1000,
}

# (latency class) -> circuit breaker failure threshold, reset timeout, broker operation deadline
# (ms), health check interval (s). A publish must fail inside the latency budget's order of
# magnitude, not after a client library's multi-second default, and /readyz must turn red within
# about a second or two of the broker hanging, even on an idle server.
BREAKER_TABLE: dict[LatencyClass, tuple[int, float, int, float]] = {
    LatencyClass.REALTIME: (5, 5.0, 250, 1.0),
    LatencyClass.INTERACTIVE: (5, 15.0, 1000, 2.0),
}

# History must outlast a failover: the hottest channel's messages during the time a client needs
# to notice, wait its first reconnect delay and resubscribe elsewhere, twice over for safety.
HOT_CHANNEL_SKEW = 10
"""The hottest channel carries this many times the average channel's rate (capped at the total)."""
FAILOVER_HANDSHAKE_S = 1.0
"""Handshake, authentication and resubscribe after the first reconnect delay."""
HISTORY_CAP = 10_000
"""Upper bound of a sized history (the brokers' default for durable channels)."""

DEFAULT_BROKER_URLS: dict[ScalingStrategy, str] = {
    ScalingStrategy.SINGLE: "memory://",
    ScalingStrategy.REDIS_PUBSUB: "redis://127.0.0.1:6379/0",
    ScalingStrategy.REDIS_STREAMS: "redis://127.0.0.1:6379/0",
    ScalingStrategy.NATS: "nats://127.0.0.1:4222",
    ScalingStrategy.RABBITMQ: "amqp://127.0.0.1:5672/",  # guest/guest by default; a password belongs in WS_BROKER_URL
}

DEV_ORIGINS = ["http://localhost:8000", "http://127.0.0.1:8000"]

SERVER_API_KEYS_ENV = "WS_API_KEYS"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - named as the option step 2 rejects for the API, never bound

HOOK_NAMES = ("connect", "subscribe", "publish", "disconnect")
# (latency class) -> deadline of one hook call (ms). A hook sits in the path of a handshake,
# subscribe or publish, so it gets the budget of one broker operation (BREAKER_TABLE): an
# application that answers later is treated as down, and the closed hooks refuse.
HOOK_TIMEOUT_MS: dict[LatencyClass, int] = {
    LatencyClass.REALTIME: 250,
    LatencyClass.INTERACTIVE: 1000,
}
HOOK_ROLES: dict[str, str] = {
    "connect": "the application may refuse a connection or attach user info and initial channel grants; "
    "fails closed (no answer: the connection is refused)",
    "subscribe": "the application authorizes a channel of a `hook` namespace for this user; fails closed "
    "(no answer: the subscribe is refused)",
    "publish": "the application validates, rewrites or stores a client's message before it is broadcast; "
    "fails closed (no answer: the publish gets an error, nothing is broadcast)",
    "disconnect": "the application is told a connection ended; fire-and-forget (never delays or fails anything)",
}


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------


class _Decisions:
    """Collects decisions in order; later ones with the same key replace earlier ones."""

    def __init__(self) -> None:
        self.rows: dict[str, Decision] = {}

    def add(
        self,
        key: str,
        value: Any,
        rationale: str,
        source: Source = Source.TABLE,
        alternatives: dict[str, str] | None = None,
    ) -> Any:
        self.rows[key] = Decision(
            key=key, value=_plain(value), rationale=rationale, source=source, alternatives=alternatives or {}
        )
        return value


def _show_final_values(d: _Decisions, final: dict[str, Any]) -> None:
    """Decisions that a memory convention changed in part (or that follow one, like the subprotocol
    order) show the value the spec ends with, in the table's shape, so every document rendered from
    the spec agrees: not the table's stale value, nor the bare convention value (``20.0`` for the
    heartbeat, a list of namespace objects)."""
    for key, value in final.items():
        row = d.rows.get(key)
        if row is None or row.value == value:
            continue
        note = "" if row.source == Source.MEMORY else " The value shown follows the memory conventions."
        d.rows[key] = row.model_copy(update={"value": value, "rationale": row.rationale + note})


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)


def _uc(req: Requirements) -> str:
    return ", ".join(u.value for u in req.use_cases)


def design(
    req: Requirements,
    memory: MemoryEntry | None = None,
    knowledge: dict[str, Any] | None = None,
) -> ArchitectureSpec:
    """Turn requirements and memory into an architecture spec, with a rationale for every decision."""
    if knowledge is None:
        knowledge = packaged_knowledge()
    conv = memory.conventions if memory is not None else Conventions()
    d = _Decisions()

    codecs = _decide_codecs(req, d)
    envelope = EnvelopeSpec()
    separator = ":"
    namespaces = _decide_namespaces(req, knowledge, d)
    fanout = _decide_fanout(req, knowledge, d)
    deliveries = req.messages_per_second * fanout
    transport = _decide_transport(req, deliveries, d)
    scaling = _decide_scaling(req, transport, deliveries, None, d)
    auth = _decide_auth(req, d)
    origins = _decide_origins(req, d)
    limits = _decide_limits(req, knowledge, scaling, namespaces, d)
    heartbeat = _decide_heartbeat(req, d)
    reconnect = _decide_reconnect(req, d)
    breaker = _decide_breaker(req, d)
    failover_rate = _hot_channel_rate(req, fanout)

    draft = _Draft(
        codecs, envelope, separator, namespaces, transport, scaling, auth, limits, heartbeat, reconnect
    )
    preferred_broker = _apply_conventions(conv, d, draft, req)
    if preferred_broker is not None or draft.transport != transport:
        # Scaling follows the transport's capacity and the broker memory prefers: decide it again.
        draft.scaling = _decide_scaling(req, draft.transport, deliveries, preferred_broker, d, quiet=True)
    codecs, envelope, separator, namespaces = draft.codecs, draft.envelope, draft.separator, draft.namespaces
    transport, scaling, auth, limits = draft.transport, draft.scaling, draft.auth, draft.limits
    heartbeat, reconnect = draft.heartbeat, draft.reconnect

    namespaces = _apply_durability(req, namespaces, scaling, d)
    namespaces = _size_history_for_failover(namespaces, failover_rate, reconnect, d)
    protocol = ProtocolSpec(codecs=codecs, subprotocols=[f"wsforge.v1.{c.value}" for c in codecs])
    _show_final_values(
        d,
        {
            "protocol.subprotocols": protocol.subprotocols,
            "channels.namespaces": [f"{ns.name} ({_plain(ns.auth)})" for ns in namespaces],
            "heartbeat": heartbeat.model_dump(mode="json"),
            "reconnect": reconnect.model_dump(
                mode="json", include={"base_s", "cap_s", "jitter", "reset_after_s"}
            ),
        },
    )
    host, scaling = _decide_host(req, transport, scaling, deliveries, preferred_broker, conv, d)
    scaling, deploy = _decide_deployment(req, scaling, ShutdownSpec().grace_s, conv, d, host)
    server_api, publisher, hooks = _decide_backend_access(req, namespaces, scaling, conv, d)
    socketio = _decide_protocol_layer(req, heartbeat, reconnect, conv, d)
    known = [f"{ki.id}: {ki.summary}" for ki in (memory.known_issues if memory else [])]
    return ArchitectureSpec(
        project=req.project_name,
        package=req.package,
        wsforge_version=__version__,
        use_cases=[u.value for u in req.use_cases],
        protocol=protocol,
        envelope=envelope,
        channels=ChannelsSpec(separator=separator, namespaces=namespaces),
        transport=transport,
        scaling=scaling,
        auth=auth,
        allowed_origins=origins,
        limits=limits,
        heartbeat=heartbeat,
        reconnect=reconnect,
        circuit_breaker=breaker,
        server_api=server_api,
        publisher=publisher,
        hooks=hooks,
        deploy=deploy,
        host=host,
        socketio=socketio,
        decisions=list(d.rows.values()),
        known_issues=known,
        requirements=req,
    )


# --------------------------------------------------------------------------------------------
# Individual decisions
# --------------------------------------------------------------------------------------------


PROTOBUF_MIN_RATE = 10_000
"""Published messages per second from which step 2 prefers Protocol Buffers for non-browser fleets."""
PROTOBUF_MAX_PAYLOAD = 512
"""Average payload (bytes) up to which field names dominate a frame: where protobuf saves most."""


def offered_codecs(first: Codec) -> list[Codec]:
    """Codecs in the server's preference order: ``first``, then JSON and MessagePack. Protocol
    Buffers is offered only when it leads: every client needs the types generated from the project's
    ``.proto``, so a project that did not choose it does not carry it."""
    return [first, *[c for c in (Codec.JSON, Codec.MSGPACK) if c != first]]


def _decide_codecs(req: Requirements, d: _Decisions) -> list[Codec]:
    envs = set(req.client_environments)
    fleet = envs & {ClientEnvironment.IOT, ClientEnvironment.MOBILE}
    if req.serialization != Serialization.AUTO:
        first = Codec(req.serialization.value)
        why = f"requirements ask for {first.value} explicitly"
        source = Source.REQUIREMENT
    elif (
        ClientEnvironment.BROWSER not in envs
        and fleet
        and req.messages_per_second >= PROTOBUF_MIN_RATE
        and req.avg_payload_bytes <= PROTOBUF_MAX_PAYLOAD
    ):
        first, why, source = (
            Codec.PROTOBUF,
            f"no browser clients, {'/'.join(sorted(e.value for e in fleet))} clients at "
            f"{req.messages_per_second} messages/s of about {req.avg_payload_bytes} bytes: field names "
            "would be a large share of every frame, and Protocol Buffers sends field numbers and typed "
            "values instead, with one schema (`proto/`) the device and app teams generate their code from",
            Source.TABLE,
        )
    elif ClientEnvironment.BROWSER not in envs and envs & {ClientEnvironment.IOT, ClientEnvironment.SERVER}:
        first, why, source = (
            Codec.MSGPACK,
            "no browser clients and IoT/server clients: MessagePack frames are smaller and faster to parse",
            Source.TABLE,
        )
    else:
        first, why, source = (
            Codec.JSON,
            "browser clients read JSON natively; MessagePack stays available for other clients",
            Source.TABLE,
        )
    codecs = offered_codecs(first)
    d.add(
        "serialization",
        first,
        f"{why} (client environments: {', '.join(e.value for e in req.client_environments)}).",
        source,
        alternatives=_rejected_codecs(first, source, ClientEnvironment.BROWSER in envs),
    )
    d.add(
        "protocol.subprotocols",
        [f"wsforge.v1.{c.value}" for c in codecs],
        "the subprotocol carries protocol version and codec so either side can refuse a mismatch at the handshake.",
    )
    return codecs


def _rejected_codecs(first: Codec, source: Source, browser: bool) -> dict[str, str]:
    """Why each codec other than ``first`` does not lead (and whether it is still offered)."""
    asked = source == Source.REQUIREMENT
    why: dict[Codec, str] = {
        Codec.JSON: (
            "still offered second, for debugging tools and quick scripts" if first != Codec.JSON else ""
        ),
        Codec.MSGPACK: (
            "still offered, for mobile and server clients that want compact frames without a schema"
            if first != Codec.MSGPACK
            else ""
        ),
        Codec.PROTOBUF: (
            "every client would need the types generated from the project's `.proto` (protoc or "
            "protobufjs), and browsers a decoder library; taken for IoT or mobile fleets with high "
            "message rates and small payloads, or when asked"
        ),
    }
    if first == Codec.PROTOBUF:
        why[Codec.JSON] = (
            "field names in every frame and slower parsing on small devices; still offered second, for "
            "debugging and for browsers"
            + (
                " (the browser client speaks protobuf too, through protobufjs: 26 kB more, gzipped)"
                if browser
                else ""
            )
        )
    elif first == Codec.MSGPACK:
        why[Codec.JSON] = (
            "larger frames and slower parsing for IoT/server clients; still offered second, for debugging "
            "tools and browsers"
        )
    elif first == Codec.JSON and not asked:
        why[Codec.MSGPACK] = (
            "browsers would need a decoder library and devtools show binary frames as bytes; still offered "
            "second, for mobile and server clients"
        )
    if asked:
        why = {c: f"the requirements name {first.value}; " + text for c, text in why.items() if text}
    return {
        f"{c.value} first" if c != Codec.PROTOBUF else c.value: text
        for c, text in why.items()
        if c != first and text
    }


def _decide_protocol_layer(
    req: Requirements, heartbeat: HeartbeatSpec, reconnect: ReconnectSpec, conv: Conventions, d: _Decisions
) -> SocketIOSpec:
    """Native envelope only, or Socket.IO v5 beside it (issue 24). Both faces share one core."""
    if req.client_protocol != ClientProtocol.AUTO:
        chosen, source = req.client_protocol.value, Source.REQUIREMENT
        why = f"the requirements ask for {chosen} clients"
    elif conv.client_protocol is not None:
        chosen, source = conv.client_protocol, Source.MEMORY
        why = f"memory convention `client_protocol` = {chosen!r}"
    else:
        chosen, source = ClientProtocol.NATIVE.value, Source.TABLE
        why = (
            "no existing Socket.IO clients and no proxies that block WebSocket were named: the native "
            "envelope is leaner on the wire, and the project generates its Python and JavaScript clients"
        )
    socketio = chosen == ClientProtocol.SOCKETIO.value
    if socketio:
        why += (
            ": the server also answers Socket.IO v5 / Engine.IO v4 clients (socket.io-client in every language "
            "teams ship, HTTP long-polling with upgrade to WebSocket) on the same core, so channels, history, "
            "limits and auth are one implementation"
        )
    d.add(
        "protocol.layer",
        ProtocolLayer.SOCKETIO if socketio else ProtocolLayer.NATIVE,
        f"{why}.",
        source,
        alternatives=(
            {
                "native only": "only wsforge's generated Python and JavaScript clients could connect, and clients "
                "behind proxies that block WebSocket would have no long-polling fallback"
            }
            if socketio
            else {
                "socketio": "serves every socket.io-client library (web, iOS, Android, Flutter, Java, C++) and "
                "HTTP long-polling behind proxies that block WebSocket, for larger frames and a second protocol "
                "face to keep in step; taken when the answers or memory (`client_protocol`) ask for it"
            }
        ),
    )
    return SocketIOSpec(
        enabled=socketio,
        ping_interval_s=heartbeat.interval_s,
        ping_timeout_s=heartbeat.timeout_s,
        recovery_window_s=max(120.0, 2 * reconnect.cap_s),
    )


def _decide_fanout(req: Requirements, knowledge: dict[str, Any], d: _Decisions) -> int:
    if req.avg_subscribers_per_channel is not None:
        return int(
            d.add(
                "fanout",
                req.avg_subscribers_per_channel,
                f"avg_subscribers_per_channel = {req.avg_subscribers_per_channel} given in the requirements.",
                Source.REQUIREMENT,
            )
        )
    profiles = knowledge["use_cases"]
    value = max(int(profiles[u.value]["default_fanout"]) for u in req.use_cases)
    return int(
        d.add("fanout", value, f"typical fan-out for {_uc(req)} from the knowledge index (no figure given).")
    )


def _decide_namespaces(req: Requirements, knowledge: dict[str, Any], d: _Decisions) -> list[NamespaceSpec]:
    found: dict[str, NamespaceSpec] = {}
    for use_case in req.use_cases:
        for raw in knowledge["use_cases"][use_case.value]["namespaces"]:
            ns = NamespaceSpec(**raw)
            if ns.name not in found:
                found[ns.name] = ns
    namespaces = list(found.values())
    if req.auth == AuthMode.NONE:
        dropped = [ns.name for ns in namespaces if ns.auth == ChannelAuth.PRIVATE]
        namespaces = [
            ns.model_copy(update={"auth": ChannelAuth.PUBLIC, "presence": False})
            for ns in namespaces
            if ns.auth != ChannelAuth.PRIVATE
        ]
        if dropped:
            d.add(
                "channels.private_dropped",
                dropped,
                "auth = none: private per-user namespaces need an identity, so they are left out.",
                Source.REQUIREMENT,
            )
        if not namespaces:
            namespaces = [
                NamespaceSpec(name="public", auth=ChannelAuth.PUBLIC, description="public channels")
            ]
    d.add(
        "channels.namespaces",
        [f"{ns.name} ({ns.auth.value})" for ns in namespaces],
        f"namespaces typical for {_uc(req)}, each with its own auth policy and backpressure class.",
    )
    return namespaces


def _decide_transport(req: Requirements, deliveries: int, d: _Decisions) -> Transport:
    ws = CAPACITY[Transport.WEBSOCKETS]
    needed = max(
        req.concurrent_connections / (ws.connections * HEADROOM),
        deliveries / (ws.deliveries_per_s * HEADROOM),
    )
    wants_fast = needed > 4 or (
        req.latency_class == LatencyClass.REALTIME and UseCase.TRADING in req.use_cases
    )
    if wants_fast and Transport.PICOWS in TRANSPORTS_AVAILABLE:
        rejected = {
            "websockets": f"the targets would need {needed:.1f} instances of its capacity; it stays available "
            "(WS_TRANSPORT=websockets) and passes the same behaviour suite"
        }
        return Transport(
            d.add(
                "transport",
                Transport.PICOWS,
                f"{deliveries} deliveries/s and {req.concurrent_connections} connections would need "
                f"{needed:.1f} websockets instances; the picows adapter carries several times more per core "
                "(bench/RESULTS.md, fan-out per server-CPU-second). Run the mypyc build in production (the "
                "Dockerfile's default for picows): 14-37 % less CPU per request/response and about twice the "
                "fan-out deliveries per CPU-second in the benchmark; 0.83-0.93x raw picows' round trips per "
                "CPU-second against the pure build's 0.53-0.71x.",
                alternatives=rejected,
            )
        )
    why = "the websockets library is the familiar default and carries the targets"
    rejected = {
        "picows": f"about twice the throughput per core (bench/RESULTS.md), not needed at {needed:.1f} instances' "
        "worth of load; a less familiar library for the team (WS_TRANSPORT=picows switches later)"
    }
    if wants_fast:
        why = "picows would carry more per core, but memory or this installation keeps websockets"
        rejected = {"picows": why}
    return Transport(
        d.add(
            "transport",
            Transport.WEBSOCKETS,
            f"{why} ({needed:.1f} instances of websockets-level capacity needed).",
            alternatives=rejected,
        )
    )


def _decide_scaling(
    req: Requirements,
    transport: Transport,
    deliveries: int,
    preferred_broker: str | None,
    d: _Decisions,
    *,
    quiet: bool = False,
    capacity: Capacity | None = None,
) -> ScalingSpec:
    cap = capacity or CAPACITY[transport]
    by_conn = math.ceil(req.concurrent_connections / (cap.connections * HEADROOM))
    by_msgs = math.ceil(deliveries / (cap.deliveries_per_s * HEADROOM)) if deliveries else 1
    instances = max(1, by_conn, by_msgs)
    durable = req.durability == Durability.PERSISTENT
    if instances == 1 and not durable:
        strategy = ScalingStrategy.SINGLE
        why = "one instance carries the targets and nothing must survive a restart: the in-memory broker suffices"
    elif durable or req.durability == Durability.REPLAY:
        strategy = ScalingStrategy.REDIS_STREAMS
        why = (
            "messages must survive restarts" if durable else "replay on reconnect must work on any instance"
        ) + ": Redis Streams keep ordered, trimmed history shared by every instance"
    else:
        strategy = ScalingStrategy.REDIS_PUBSUB
        why = "several instances and ephemeral messages: Redis pub/sub fans out between them with no storage"
    source = Source.TABLE
    if preferred_broker is not None and strategy == ScalingStrategy.SINGLE:
        why += f"; memory prefers {preferred_broker}, which applies once the project scales out"
    elif preferred_broker == "nats":
        strategy = ScalingStrategy.NATS
        why = "memory convention `preferred_broker` = 'nats': core subjects for fan-out, JetStream for durable history"
        source = Source.MEMORY
    elif preferred_broker == "rabbitmq":
        strategy = ScalingStrategy.RABBITMQ
        why = (
            "memory convention `preferred_broker` = 'rabbitmq' (the team runs RabbitMQ): a RabbitMQ stream "
            "keeps every channel's ordered, durable history and is what every instance reads to fan messages "
            "out; one single-active-consumer queue sequences publishes and decides presence; unsequenced "
            "notices go through a fanout exchange"
        )
        source = Source.MEMORY
    elif preferred_broker == "redis":
        why = f"memory convention `preferred_broker` = 'redis' ({why})"
        source = Source.MEMORY
    spec = ScalingSpec(
        strategy=strategy,
        broker_url=DEFAULT_BROKER_URLS[strategy],
        instances=instances,
        connections_per_instance=cap.connections,
        deliveries_per_instance=cap.deliveries_per_s,
        expected_deliveries_per_second=deliveries,
    )
    if not quiet or preferred_broker is not None:
        d.add(
            "scaling.instances",
            instances,
            f"{req.concurrent_connections} connections / {cap.connections} per instance and {deliveries} "
            f"deliveries/s / {cap.deliveries_per_s} per instance at {int(HEADROOM * 100)} % headroom "
            f"({cap.source}).",
        )
        d.add(
            "scaling.strategy",
            strategy,
            f"{why} (durability = {req.durability.value}, {instances} instance(s)).",
            source,
            alternatives=_rejected_strategies(strategy, instances, req.durability),
        )
    return spec


def _rejected_strategies(chosen: ScalingStrategy, instances: int, durability: Durability) -> dict[str, str]:
    """Why each broker strategy other than ``chosen`` was not taken."""
    keeps = durability in (Durability.PERSISTENT, Durability.REPLAY)
    one = "one instance carries the targets"
    prefers = "memory prefers RabbitMQ" if chosen == ScalingStrategy.RABBITMQ else "memory prefers NATS"
    why: dict[ScalingStrategy, str] = {
        ScalingStrategy.SINGLE: (
            f"{instances} instances are needed and one process cannot share its channels with another"
            if instances > 1
            else "messages must survive a restart of the process"
        ),
        ScalingStrategy.REDIS_PUBSUB: (
            f"{one}: a broker process would add a dependency and a hop for nothing"
            if chosen == ScalingStrategy.SINGLE
            else "keeps no history, and resume on any instance or durability needs it"
            if keeps
            else prefers
        ),
        ScalingStrategy.REDIS_STREAMS: (
            f"{one}; the in-memory broker keeps the history replay needs"
            if chosen == ScalingStrategy.SINGLE and keeps
            else f"{one} and nothing must be kept"
            if chosen == ScalingStrategy.SINGLE
            else "stores every message although nothing needs replaying or keeping"
            if not keeps
            else prefers
        ),
        ScalingStrategy.NATS: (
            "Redis is the default: one dependency covers fan-out, history (Streams) and presence; "
            "NATS with JetStream is taken when the memory convention preferred_broker asks for it"
        ),
        ScalingStrategy.RABBITMQ: (
            "Redis is the default; RabbitMQ has no per-channel compare-and-set, so its adapter orders "
            "publishes through one sequencer and keeps a replica of recent history in every instance: "
            "taken when the team already runs RabbitMQ (memory preferred_broker)"
        ),
    }
    return {s.value: text for s, text in why.items() if s != chosen}


def _decide_auth(req: Requirements, d: _Decisions) -> AuthSpec:
    envs = set(req.client_environments)
    if req.auth == AuthMode.NONE:
        d.add(
            "auth.mode",
            "none",
            "requirements say no authentication: every namespace is public.",
            Source.REQUIREMENT,
        )
        return AuthSpec(mode="none", token_sources=[])
    sources: list[TokenSource] = ["header"]
    if ClientEnvironment.BROWSER in envs:
        sources += ["subprotocol", "query"]
    if req.auth == AuthMode.COOKIE:
        sources = ["cookie", *sources]
    d.add(
        "auth.mode",
        req.auth.value,
        f"requirements ask for {req.auth.value}; the token is verified during the HTTP upgrade, before the socket opens.",
        Source.REQUIREMENT,
    )
    d.add(
        "auth.token_sources",
        sources,
        "browsers cannot set headers on a WebSocket, so the token may also ride in the subprotocol or query"
        if ClientEnvironment.BROWSER in envs
        else "non-browser clients send an Authorization header.",
    )
    d.add(
        "auth.algorithms", ["HS256"], "algorithms are pinned so `alg: none` and HS/RS confusion tokens fail."
    )
    return AuthSpec(mode=req.auth.value, token_sources=sources)


def _decide_origins(req: Requirements, d: _Decisions) -> list[str]:
    if req.allowed_origins:
        return list(
            d.add(
                "allowed_origins",
                req.allowed_origins,
                "origins listed in the requirements.",
                Source.REQUIREMENT,
            )
        )
    if ClientEnvironment.BROWSER in req.client_environments:
        return list(
            d.add(
                "allowed_origins",
                DEV_ORIGINS,
                "browser clients but no origins given: only local development origins are allowed until you set "
                "WS_ALLOWED_ORIGINS (review flags this).",
            )
        )
    return list(
        d.add(
            "allowed_origins",
            [],
            "no browser clients: requests without an Origin header are accepted, any browser Origin is refused.",
        )
    )


def _decide_limits(
    req: Requirements,
    knowledge: dict[str, Any],
    scaling: ScalingSpec,
    namespaces: list[NamespaceSpec],
    d: _Decisions,
) -> LimitsSpec:
    max_payload = 1 << max(12, min(20, math.ceil(math.log2(max(req.avg_payload_bytes, 1) * 16))))
    d.add(
        "limits.max_payload_bytes",
        max_payload,
        f"16x the average payload of {req.avg_payload_bytes} B, as a power of two within 4 KiB..1 MiB; larger frames close with 1009.",
    )
    rate = max(float(knowledge["use_cases"][u.value]["rate_per_s"]) for u in req.use_cases)
    if req.message_patterns == [MessagePattern.SERVER_PUSH]:
        rate = min(rate, 5.0)
    burst = int(max(10, rate * 2))
    push_only = (
        " (server push only: clients send just control messages)"
        if req.message_patterns == [MessagePattern.SERVER_PUSH]
        else ""
    )
    d.add(
        "limits.rate_per_s",
        rate,
        f"per-connection token bucket sized for {_uc(req)} clients, burst {burst}{push_only}; excess gets "
        "rate_limited errors, then close 4008.",
    )
    per_ip = min(CONNECTIONS_PER_IP[e] for e in req.client_environments)
    if ClientEnvironment.SERVER in req.client_environments and len(req.client_environments) == 1:
        per_ip = CONNECTIONS_PER_IP[ClientEnvironment.SERVER]
    d.add(
        "limits.max_connections_per_ip",
        per_ip,
        f"the strictest of the client environments ({', '.join(e.value for e in req.client_environments)}).",
    )
    total = scaling.connections_per_instance
    d.add(
        "limits.max_connections_total",
        total,
        "one instance's measured capacity; beyond it new connections get 503 and go to another instance.",
    )
    coalescing = any(ns.backpressure == Backpressure.COALESCE for ns in namespaces)
    queue = 64 if coalescing else 256
    d.add(
        "limits.outbound_queue_size",
        queue,
        "a short queue for feeds where only the newest value matters"
        if coalescing
        else "room for a burst of room traffic before the slow-consumer policy applies",
    )
    return LimitsSpec(
        max_payload_bytes=max_payload,
        rate_per_s=rate,
        rate_burst=burst,
        max_connections_per_ip=per_ip,
        max_connections_total=total,
        outbound_queue_size=queue,
    )


def _decide_heartbeat(req: Requirements, d: _Decisions) -> HeartbeatSpec:
    constrained = set(req.client_environments) & {ClientEnvironment.MOBILE, ClientEnvironment.IOT}
    if constrained and req.latency_class == LatencyClass.INTERACTIVE:
        interval, timeout = HEARTBEAT_CONSTRAINED
        why = "mobile/IoT clients with relaxed latency: fewer radio wake-ups"
    else:
        interval, timeout = HEARTBEAT_TABLE[req.latency_class]
        why = f"latency class {req.latency_class.value}"
    d.add(
        "heartbeat",
        {"interval_s": interval, "timeout_s": timeout},
        f"{why}; the interval stays below the 60 s idle timeout of common proxies, so dead peers are found in "
        f"at most {interval + timeout:.0f} s.",
    )
    return HeartbeatSpec(interval_s=interval, timeout_s=timeout)


def _decide_reconnect(req: Requirements, d: _Decisions) -> ReconnectSpec:
    if req.concurrent_connections >= FLEET_SIZE:
        base, cap, reset = RECONNECT_FLEET
        why = f"{req.concurrent_connections} clients reconnect together after a deploy; a wider window spreads the herd"
    else:
        base, cap, reset = RECONNECT_TABLE[req.latency_class]
        why = f"latency class {req.latency_class.value}"
    d.add(
        "reconnect",
        {"base_s": base, "cap_s": cap, "jitter": "full", "reset_after_s": reset},
        f"{why}; full jitter avoids synchronized retries.",
    )
    return ReconnectSpec(base_s=base, cap_s=cap, reset_after_s=reset)


def _decide_breaker(req: Requirements, d: _Decisions) -> CircuitBreakerSpec:
    threshold, reset, op_timeout_ms, health_s = BREAKER_TABLE[req.latency_class]
    d.add(
        "circuit_breaker",
        {
            "failure_threshold": threshold,
            "reset_timeout_s": reset,
            "op_timeout_ms": op_timeout_ms,
            "health_interval_s": health_s,
        },
        f"latency class {req.latency_class.value}: a broker operation fails after {op_timeout_ms} ms "
        f"(a hung broker must not hold publishes for seconds), a broker round trip is checked every "
        f"{health_s:g} s so /readyz turns 503 even on an idle server, the circuit opens after "
        f"{threshold} failures and probes again after {reset:.0f} s.",
    )
    return CircuitBreakerSpec(
        failure_threshold=threshold,
        reset_timeout_s=reset,
        op_timeout_ms=op_timeout_ms,
        health_interval_s=health_s,
    )


def _decide_host(
    req: Requirements,
    transport: Transport,
    scaling: ScalingSpec,
    deliveries: int,
    preferred_broker: str | None,
    conv: Conventions,
    d: _Decisions,
) -> tuple[HostSpec, ScalingSpec]:
    """Standalone server beside the team's app, or the same core mounted inside it.

    Mounting costs throughput per core (the host's ASGI stack against picows/websockets on their
    own loop) and buys one deployment, the app's own users and sessions at the upgrade, and
    publishing from the app's routes in process. It is chosen while the cores it needs stay
    within :data:`MOUNT_MAX_CORE_FACTOR` of the standalone plan. When mounted, the instances are
    planned again at the ASGI target's capacity.
    """
    app = req.existing_app
    source = Source.REQUIREMENT
    if app == ExistingApp.NONE and conv.existing_app is not None:
        app, source = ExistingApp(conv.existing_app), Source.MEMORY
    standalone_cores = scaling.instances
    cap = CAPACITY[transport]
    asgi = ASGI_CAPACITY
    asgi_cores = max(
        1,
        math.ceil(req.concurrent_connections / (asgi.connections * HEADROOM)),
        math.ceil(deliveries / (asgi.deliveries_per_s * HEADROOM)) if deliveries else 1,
    )
    figures = (
        f"per core: {transport.value} {cap.connections} connections / {cap.deliveries_per_s} deliveries/s "
        f"({cap.source}); mounted behind uvicorn {asgi.connections} / {asgi.deliveries_per_s} ({asgi.source})"
    )
    if app == ExistingApp.NONE:
        d.add(
            "deploy.shape",
            "standalone",
            "no existing web application named (existing_app = none): the endpoint runs as its own server.",
            Source.REQUIREMENT,
            alternatives={"mounted in an ASGI or Django app": "there is no app to mount it in"},
        )
        return HostSpec(), scaling
    affordable = asgi_cores <= max(MOUNT_MAX_CORE_FACTOR * standalone_cores, standalone_cores + 2)
    mounted = affordable
    label = {"fastapi": "FastAPI", "starlette": "Starlette", "django": "Django"}[app.value]
    if mounted:
        why = (
            f"the team runs {label}: mounting the endpoint in it keeps one deployment, authenticates the "
            f"upgrade with the app's own users{' and sessions' if app == ExistingApp.DJANGO else ''}, and "
            f"lets its routes publish in process; the load needs {asgi_cores} core(s) mounted against "
            f"{standalone_cores} standalone, within the {MOUNT_MAX_CORE_FACTOR}x the shape may cost"
        )
    else:
        why = (
            f"the load needs {asgi_cores} cores mounted in {label} against {standalone_cores} as a standalone "
            f"{transport.value} server: more than {MOUNT_MAX_CORE_FACTOR}x, so the endpoint runs beside the "
            "app, which publishes through the broker (publisher library) or the server API, and shares "
            "identity through the JWT"
        )
    if conv.mount_in_app is not None and conv.mount_in_app != mounted:
        mounted = conv.mount_in_app
        why = f"memory convention `mount_in_app` = {str(mounted).lower()} (the table said: {why})"
        source = Source.MEMORY
    alternatives = {
        "standalone": "two deployments to run and a JWT the app must mint for its users; worth it only when "
        "the throughput per core matters more (see the figures)",
        "mounted": f"the ASGI stack would need {asgi_cores} cores against {standalone_cores}",
    }
    if app == ExistingApp.DJANGO:
        alternatives["Django Channels' channel layer for fan-out"] = (
            "at-most-once groups with no seq, history, idempotency or presence, and group sends over "
            "capacity dropped silently; wsforge's broker carries fan-out, and Django publishes through it"
        )
    d.add(
        "deploy.shape",
        "mounted" if mounted else "standalone",
        f"{why} ({figures}).",
        source,
        alternatives={k: v for k, v in alternatives.items() if k != ("mounted" if mounted else "standalone")},
    )
    host = HostSpec(
        app=HostApp(app.value),
        mounted=mounted,
        asgi_server="uvicorn",
        session_auth=mounted and app == ExistingApp.DJANGO and req.auth != AuthMode.NONE,
    )
    if mounted and host.session_auth:
        d.add(
            "host.session_auth",
            True,
            "Django's session cookie authenticates the upgrade (django.contrib.auth, the same check as its "
            "views); clients without a session (mobile, services) still present the JWT.",
        )
    if mounted:
        scaling = _decide_scaling(req, transport, deliveries, preferred_broker, d, capacity=asgi)
    return host, scaling


def _decide_deployment(
    req: Requirements,
    scaling: ScalingSpec,
    shutdown_grace_s: float,
    conv: Conventions,
    d: _Decisions,
    host: HostSpec | None = None,
) -> tuple[ScalingSpec, DeploySpec]:
    """Workers per instance, and whether and how the instances run on Kubernetes.

    The capacity figures are per core, so the plan is a number of single-core server processes
    (``scaling.instances`` as :func:`_decide_scaling` left it). Grouping them is a deployment
    choice: one process per pod by default, several per instance when the team runs on VMs.
    """
    cores = scaling.instances
    single = scaling.strategy == ScalingStrategy.SINGLE
    wanted = conv.workers_per_instance
    if single:
        workers = 1
        why = (
            "the in-memory broker lives inside one process, so a second worker would see none of the "
            "first one's channels; `--workers` refuses more than one until WS_BROKER_URL names Redis or NATS"
        )
        source = Source.TABLE
        if wanted is not None and wanted > 1:
            why = f"memory asks for {wanted} workers per instance, but {why}"
            source = Source.MEMORY
    elif wanted is not None:
        workers = min(wanted, cores)
        why = (
            f"memory convention `workers_per_instance` = {wanted}: each instance runs {workers} server "
            f"processes on one port (SO_REUSEPORT), supervised by `python -m {req.package} --workers`"
        )
        if workers < wanted:
            why += f" (capped at the {cores} cores the plan needs)"
        source = Source.MEMORY
    else:
        workers = 1
        why = (
            "one server process per instance: an orchestrator (Kubernetes, compose) already restarts and "
            "load-balances instances, so one core per pod keeps autoscaling steps one core wide, /metrics "
            "per pod, and a crash's reconnect storm to one instance's clients. On a VM or a bare box, "
            "`--workers auto` (WS_WORKERS) runs one process per core instead"
        )
        source = Source.TABLE
    d.add(
        "scaling.workers",
        workers,
        f"{why}; the capacity figures are per core, and the plan needs {cores}.",
        source,
        alternatives={
            "one process per core in each instance": "fewer, larger instances: fewer pods to run, but every "
            "restart or crash drops several cores' worth of connections at once",
            "threads": "the server is one asyncio loop per process; threads would share one core (the GIL)",
        },
    )
    instances = math.ceil(cores / workers)
    if instances != scaling.instances:
        d.add(
            "scaling.instances",
            instances,
            f"{cores} single-core server processes planned, {workers} per instance.",
            Source.MEMORY,
        )
    scaling = scaling.model_copy(update={"instances": instances, "workers": workers})

    kubernetes = instances > 1
    why = (
        f"{instances} instances to run and keep running: Kubernetes restarts, spreads, drains and "
        "autoscales them, which compose on one box cannot"
        if kubernetes
        else "one instance: deploy/docker-compose.yml runs it; manifests would add a cluster to operate for nothing"
    )
    if host is not None and host.mounted:
        kubernetes = False
        why = (
            f"the endpoint runs inside the {host.app.value} app's own pods or processes, whose manifests are "
            "the team's; the README lists the probes, grace period and environment they need"
        )
    source = Source.TABLE
    if conv.kubernetes is not None and conv.kubernetes != kubernetes:
        kubernetes = conv.kubernetes
        why = f"memory convention `kubernetes` = {str(kubernetes).lower()} (the table said: {why})"
        source = Source.MEMORY
    memory_mib = workers * math.ceil(
        MEMORY_BASE_MIB + scaling.connections_per_instance * HEADROOM * MEMORY_PER_CONNECTION_KIB / 1024
    )
    grace = math.ceil(PRESTOP_S + shutdown_grace_s + 5)
    deploy = DeploySpec(
        kubernetes=kubernetes,
        cpu_millicores=1000 * workers,
        memory_mib=memory_mib,
        prestop_s=PRESTOP_S,
        termination_grace_s=grace,
        max_replicas=instances * AUTOSCALE_CEILING if not single else 1,
        target_cpu_percent=int(HEADROOM * 100),
    )
    d.add(
        "deploy.kubernetes",
        kubernetes,
        why + ".",
        source,
        alternatives={
            "Helm chart": "templating on top of templating; plain manifests with a kustomization are what "
            "kubectl applies as is and what a team's own overlays patch",
            "docker compose only": "one box: no rescheduling of a dead host, no rolling deploys, no autoscaling",
        },
    )
    if kubernetes:
        d.add(
            "deploy.resources",
            {"cpu_millicores": deploy.cpu_millicores, "memory_mib": memory_mib},
            f"one core per worker, requested and never limited (CFS throttling stalls the event loop); memory "
            f"{MEMORY_BASE_MIB} MiB + {MEMORY_PER_CONNECTION_KIB} KiB per connection at "
            f"{int(HEADROOM * 100)} % of {scaling.connections_per_instance} connections per worker, as request "
            "and limit so the pod is never overcommitted",
        )
        d.add(
            "deploy.lifecycle",
            {"prestop_s": PRESTOP_S, "termination_grace_s": grace},
            f"preStop sleeps {PRESTOP_S:g} s so endpoints drop the pod before SIGTERM; the drain then has "
            f"shutdown.grace_s = {shutdown_grace_s:g} s, and the kubelet waits {grace} s in all before SIGKILL.",
        )
        d.add(
            "deploy.autoscaling",
            {"min": instances, "max": deploy.max_replicas, "target_cpu_percent": deploy.target_cpu_percent},
            "no autoscaling: the in-memory broker cannot span pods"
            if single
            else f"the planned {instances} replicas at least, up to {AUTOSCALE_CEILING}x on CPU at the "
            f"{int(HEADROOM * 100)} % headroom the capacity plan used; a PodDisruptionBudget keeps all but "
            "one pod up during voluntary evictions",
        )
    return scaling, deploy


def _decide_backend_access(
    req: Requirements,
    namespaces: list[NamespaceSpec],
    scaling: ScalingSpec,
    conv: Conventions,
    d: _Decisions,
) -> tuple[ServerApiSpec, PublisherSpec, HooksSpec]:
    """The application's front door: the server API, the backend's publisher, the event hooks."""
    server_api = _decide_server_api(req, namespaces, conv, d)
    publisher = _decide_publisher(scaling, server_api, conv, d)
    hooks = _decide_hooks(req, namespaces, conv, d)
    return server_api, publisher, hooks


def _decide_server_api(
    req: Requirements, namespaces: list[NamespaceSpec], conv: Conventions, d: _Decisions
) -> ServerApiSpec:
    roles = req.publisher_roles
    if req.publishers_derived:
        d.add(
            "publishers",
            roles,
            f"derived (no `publishers` answer): {_publishers_why(req)}.",
            alternatives={
                "answer it": "`publishers` in the answers file (or the wizard) states who publishes when the "
                "derivation is wrong, e.g. a chat whose backend also posts system messages"
            },
        )
    else:
        d.add("publishers", roles, "the `publishers` answer.", Source.REQUIREMENT)
    reasons: list[str] = []
    if MessagePattern.SERVER_PUSH in req.message_patterns:
        reasons.append("the application pushes messages (message pattern server_push)")
    closed = [ns.name for ns in namespaces if not ns.client_publish]
    if closed:
        reasons.append(f"clients may not publish to {', '.join(closed)}, so only the backend can")
    outside = [
        {"backend": "the backend", "device": "devices"}[r.value]
        for r in roles
        if r in (PublisherRole.BACKEND, PublisherRole.DEVICE)
    ]
    if outside:
        reasons.append(f"publishers: {' and '.join(outside)}, from outside a WebSocket session")
    enabled = bool(reasons)
    if enabled:
        why = (
            "; ".join(reasons)
            + ": the backend gets a front door, an HTTP API (publish, broadcast, presence, "
            f"history, disconnect, subscribe, channels, batch) on a listener of its own, authenticated by the "
            f"keys in {SERVER_API_KEYS_ENV} (none set: the API stays off)."
        )
        alternatives = {
            "no server API": "the backend could publish only from code inside the server process "
            "(`server.broker.publish`)"
            + (f"; {', '.join(closed)} would have no publisher at all" if closed else ""),
            "the API on the WebSocket port": "one listener for the public and for privileged calls: a proxy "
            "route or a forgotten check would expose publish and disconnect to the internet",
            "gRPC": "generated stubs in every backend language; HTTP and JSON work from curl and any language",
        }
    else:
        why = (
            "clients publish everything themselves and no namespace is closed to them; nobody outside a "
            "WebSocket session publishes."
        )
        alternatives = {
            "server API": "nothing needs it; answer `publishers: [backend]` (or memory `server_api: true`) when "
            "a backend starts publishing"
        }
    source = Source.TABLE
    if conv.server_api is not None and conv.server_api != enabled:
        table_why = why.rstrip(".")
        why = (
            f"memory convention `server_api` = {str(conv.server_api).lower()} overrides the decision table (the "
            f"table chose {str(enabled).lower()}: {table_why})."
        )
        alternatives = {
            "server API" if enabled else "no server API": f"the decision table's choice: {table_why}"
        }
        enabled, source = conv.server_api, Source.MEMORY
    d.add("server_api", enabled, why, source, alternatives=alternatives)
    spec = ServerApiSpec(enabled=enabled)
    if not enabled:
        return spec
    port = conv.api_port or spec.port
    d.add(
        "server_api.listen",
        f"{spec.host}:{port}",
        "loopback by default: the API's calls are privileged (publish anywhere, disconnect users), so only "
        "processes on this host reach it; the WebSocket port stays the only public one. A backend on another "
        "host reaches it over a private network you choose (`WS_API_HOST`), never the public proxy."
        + (f" Port from memory convention `api_port` = {port}." if conv.api_port else ""),
        Source.MEMORY if conv.api_port else Source.TABLE,
        alternatives={
            ALL_INTERFACES: "every network that reaches the host could call it, with the keys as the only "
            "barrier (`wsforge review` flags it)"
        },
    )
    return spec.model_copy(update={"port": port})


def _publishers_why(req: Requirements) -> str:
    parts = []
    if {MessagePattern.BIDIRECTIONAL, MessagePattern.REQUEST_RESPONSE} & set(req.message_patterns):
        parts.append(
            f"clients send ({', '.join(p.value for p in req.message_patterns)}) from "
            f"{', '.join(e.value for e in req.client_environments)}"
        )
    if MessagePattern.SERVER_PUSH in req.message_patterns:
        parts.append("server push means the backend publishes")
    pushing = [u.value for u in req.use_cases if u.value in PUSH_USE_CASES or u == UseCase.IOT]
    if pushing:
        parts.append(f"{', '.join(pushing)} messages come from the backend")
    return "; ".join(parts) or "nothing says who publishes, so the backend does"


def _decide_publisher(
    scaling: ScalingSpec, server_api: ServerApiSpec, conv: Conventions, d: _Decisions
) -> PublisherSpec:
    real_broker = scaling.strategy != ScalingStrategy.SINGLE
    in_memory = "the in-memory broker lives inside the server process, so a separate process cannot reach it"
    if not server_api.enabled:
        kind, why = PublisherKind.NONE, "no server API, and nothing outside the server publishes."
    elif real_broker:
        kind = PublisherKind.BROKER
        why = (
            f"the project shares a real broker ({scaling.strategy.value}): `publisher.py` publishes straight "
            "through it from any process, with no HTTP hop and no server running there, and with the same seq, "
            "history, idempotency and durability as a server publish; `api_client.py` calls the API too."
        )
    else:
        kind = PublisherKind.HTTP
        why = (
            f"{in_memory}: the backend publishes through the server API with `api_client.py` (standard "
            "library HTTP). Moving to Redis or NATS (`WS_BROKER_URL`, or memory `preferred_broker` when the "
            "project scales out) makes the broker library possible."
        )
    source = Source.TABLE
    if conv.publisher is not None and conv.publisher != kind.value:
        wanted = PublisherKind(conv.publisher)
        source = Source.MEMORY
        if wanted == PublisherKind.BROKER and not real_broker:
            forced = PublisherKind.HTTP if server_api.enabled else PublisherKind.NONE
            why = f"memory convention `publisher` = 'broker', but {in_memory}; " + (
                "the backend publishes through the server API's HTTP client (`api_client.py`) instead."
                if forced == PublisherKind.HTTP
                else "the server API is off too (memory `server_api`), so there is no publisher."
            )
            kind = forced
        elif wanted == PublisherKind.HTTP and not server_api.enabled:
            why = "memory convention `publisher` = 'http', but the server API is off (memory `server_api`): no publisher."
            kind = PublisherKind.NONE
        else:
            why = f"memory convention `publisher` = {conv.publisher!r} overrides the decision table (the table chose {kind.value!r})."
            kind = wanted
    by_memory = "memory conventions chose otherwise"
    alternatives = {
        PublisherKind.BROKER: (
            f"{by_memory}; it would publish with no HTTP hop and no server in the path"
            if real_broker
            else in_memory
        ),
        PublisherKind.HTTP: (
            "an HTTP round trip and a running server in the path of every publish (the API client is "
            "rendered as well, for scripts and other hosts)"
            if real_broker
            else "needs the server API, which is off"
            if not server_api.enabled
            else by_memory
        ),
        PublisherKind.NONE: "the backend would have to run inside the server process to publish",
    }
    if kind == PublisherKind.NONE and conv.publisher is None:
        alternatives[PublisherKind.BROKER] = (
            "nothing outside the server publishes; memory `publisher: broker` adds the library"
            if real_broker
            else in_memory
        )
    d.add(
        "publisher",
        kind,
        why,
        source,
        alternatives={k.value: v for k, v in alternatives.items() if k != kind},
    )
    return PublisherSpec(kind=kind)


def _decide_hooks(
    req: Requirements, namespaces: list[NamespaceSpec], conv: Conventions, d: _Decisions
) -> HooksSpec:
    wanted = list(conv.hooks or [])
    threshold, reset, _, _ = BREAKER_TABLE[req.latency_class]
    timeout_ms = HOOK_TIMEOUT_MS[req.latency_class]
    hooked = [ns.name for ns in namespaces if ns.auth == ChannelAuth.HOOK]
    if hooked and "subscribe" not in wanted:
        # Conventions refuse this when read; a caller building them by hand gets the same message.
        raise SpecError(
            f"namespace(s) {', '.join(hooked)} have auth 'hook' but the subscribe hook is off "
            "(memory conventions.hooks must list subscribe)"
        )
    if not wanted:
        d.add(
            "hooks",
            "none",
            "no event hooks: the token and the namespace policy decide every connection, subscribe and publish "
            "inside the server. Memory convention `hooks` turns them on.",
            alternatives={
                "connect / subscribe / publish hooks": "each puts an HTTP round trip to your application in "
                "the path of a handshake, subscribe or publish and fails closed while the application is down: "
                "worth it only when the application must decide"
            },
        )
        return HooksSpec()
    roles = "; ".join(f"{name}: {HOOK_ROLES[name]}" for name in HOOK_NAMES if name in wanted)
    d.add(
        "hooks",
        [name for name in HOOK_NAMES if name in wanted],
        f"memory convention `hooks` = {wanted!r} (the table turns none on). {roles}. Each is an HTTP POST "
        f"to `WS_HOOK_<NAME>_URL` with a {timeout_ms} ms deadline (latency class {req.latency_class.value}); "
        f"a breaker opens after {threshold} failures in a row and retries after {reset:g} s, and while it is "
        "open the closed hooks refuse at once instead of waiting."
        + (f" Namespace(s) {', '.join(hooked)} leave subscribing to the subscribe hook." if hooked else ""),
        Source.MEMORY,
        alternatives={
            "fail open": "letting a connection, subscribe or publish through when the application does not "
            "answer turns an outage of the application into an authorization bypass",
            "no hooks": "the application could not refuse connections, authorize channels per user or "
            "store messages before they are broadcast",
        },
    )
    on = {name: HookSpec(enabled=name in wanted, timeout_ms=timeout_ms) for name in HOOK_NAMES}
    return HooksSpec(**on, failure_threshold=threshold, reset_timeout_s=reset)


def _hot_channel_rate(req: Requirements, fanout: int) -> float:
    """Messages per second on the hottest channel: the average channel's share times the skew."""
    channels = max(1.0, req.concurrent_connections / max(1, fanout))
    return min(float(req.messages_per_second), HOT_CHANNEL_SKEW * req.messages_per_second / channels)


def _size_history_for_failover(
    namespaces: list[NamespaceSpec], rate: float, reconnect: ReconnectSpec, d: _Decisions
) -> list[NamespaceSpec]:
    """Grow kept history so a client failing over to another instance resumes instead of resyncing."""
    window = reconnect.base_s + FAILOVER_HANDSHAKE_S
    needed = min(HISTORY_CAP, math.ceil(2 * rate * window))
    out: list[NamespaceSpec] = []
    grown: list[str] = []
    for ns in namespaces:
        if 0 < ns.history_size < needed:
            grown.append(f"{ns.name}: {ns.history_size} -> {needed}")
            ns = ns.model_copy(update={"history_size": needed})
        out.append(ns)
    kept = [ns.history_size for ns in out if ns.history_size]
    if kept:
        d.add(
            "channels.history_for_failover",
            grown or "kept sizes suffice",
            f"the hottest channel is estimated at {rate:.0f} msg/s; a client failing over needs up to "
            f"{window:g} s (first reconnect delay up to {reconnect.base_s:g} s, plus handshake and "
            f"resubscribe), so history keeps at least 2 x {rate:.0f} x {window:g} = {needed} messages "
            f"(at most {HISTORY_CAP}); a channel faster than that during a failover is told to resync.",
            Source.REQUIREMENT,
        )
    return out


def _apply_durability(
    req: Requirements, namespaces: list[NamespaceSpec], scaling: ScalingSpec, d: _Decisions
) -> list[NamespaceSpec]:
    out = []
    for ns in namespaces:
        if req.durability == Durability.EPHEMERAL:
            ns = ns.model_copy(update={"history_size": 0, "durable": False, "history_ttl_s": 0})
        elif req.durability == Durability.PERSISTENT and ns.backpressure != Backpressure.COALESCE:
            # A durable channel must not drop: a slow consumer is disconnected (4009) and resumes from history.
            ns = ns.model_copy(
                update={
                    "durable": True,
                    "backpressure": Backpressure.DISCONNECT,
                    "history_size": ns.history_size or 100,
                    "history_ttl_s": ns.history_ttl_s or 7 * 24 * 3600,
                }
            )
        elif ns.history_size and not ns.history_ttl_s:
            ns = ns.model_copy(update={"history_ttl_s": 3600})
        out.append(ns)
    kept = [f"{ns.name}: {ns.history_size}" for ns in out if ns.history_size]
    d.add(
        "channels.history",
        kept or "none",
        {
            Durability.EPHEMERAL: "durability = ephemeral: no history is kept; sequence numbers still make gaps visible.",
            Durability.REPLAY: "durability = replay: bounded history per channel lets a reconnecting client resume from its last seq.",
            Durability.PERSISTENT: f"durability = persistent: history is stored by the broker ({scaling.strategy.value}) and survives restarts.",
        }[req.durability],
        Source.REQUIREMENT,
    )
    return out


def _merge_namespaces(
    namespaces: list[NamespaceSpec], conventions: list[dict[str, Any]], req: Requirements
) -> list[NamespaceSpec]:
    by_name = {ns.name: ns for ns in namespaces}
    for raw in conventions:
        by_name[raw["name"]] = NamespaceSpec(**raw)
    return list(by_name.values())


@dataclass
class _Draft:
    """The parts of the spec a memory convention can change, between the tables and the spec."""

    codecs: list[Codec]
    envelope: EnvelopeSpec
    separator: str
    namespaces: list[NamespaceSpec]
    transport: Transport
    scaling: ScalingSpec
    auth: AuthSpec
    limits: LimitsSpec
    heartbeat: HeartbeatSpec
    reconnect: ReconnectSpec


Apply = Callable[[_Draft, Any, Requirements], None]


@dataclass(frozen=True)
class Convention:
    """What one memory convention (a field of :class:`~wsforge.memory.Conventions`) overrides."""

    decision: str
    """The decision it overrides: recorded with ``source: memory``, and how regenerate names it."""
    apply: Apply
    """Lays the convention's value onto the draft spec."""


def _update(part: str, field_name: str) -> Apply:
    """Set one field of one part of the draft (``limits.rate_per_s``)."""

    def apply(draft: _Draft, value: Any, req: Requirements) -> None:
        current = getattr(draft, part)
        setattr(draft, part, current.model_copy(update={field_name: value}))

    return apply


def _lead_codec(draft: _Draft, value: Any, req: Requirements) -> None:
    draft.codecs = offered_codecs(Codec(value))


def _set_separator(draft: _Draft, value: Any, req: Requirements) -> None:
    draft.separator = value


def _rename_envelope_fields(draft: _Draft, value: Any, req: Requirements) -> None:
    draft.envelope = EnvelopeSpec(**{**draft.envelope.model_dump(), **value})


def _prefer_broker(draft: _Draft, value: Any, req: Requirements) -> None:
    """Nothing to lay: :func:`_decide_scaling` applies (and records) it, knowing whether it applies."""


def _use_transport(draft: _Draft, value: Any, req: Requirements) -> None:
    draft.transport = Transport(value)


def _add_namespaces(draft: _Draft, value: Any, req: Requirements) -> None:
    draft.namespaces = _merge_namespaces(draft.namespaces, value, req)


def _decided_with_backend_access(draft: _Draft, value: Any, req: Requirements) -> None:
    """Nothing to lay: :func:`_decide_backend_access` applies (and records) these, after the namespaces
    and the broker are final, because whether a broker publisher is possible depends on them."""


def _decided_with_protocol_layer(draft: _Draft, value: Any, req: Requirements) -> None:
    """Nothing to lay: :func:`_decide_protocol_layer` applies (and records) it; an answer wins."""


def _decided_with_deployment(draft: _Draft, value: Any, req: Requirements) -> None:
    """Nothing to lay: :func:`_decide_deployment` applies (and records) these once the broker is final."""


CONVENTIONS: dict[str, Convention] = {
    "serialization": Convention("serialization", _lead_codec),
    "channel_separator": Convention("channels.separator", _set_separator),
    "envelope_fields": Convention("envelope", _rename_envelope_fields),
    "preferred_broker": Convention("scaling.strategy", _prefer_broker),
    "transport": Convention("transport", _use_transport),
    "heartbeat_interval_s": Convention("heartbeat", _update("heartbeat", "interval_s")),
    "heartbeat_timeout_s": Convention("heartbeat", _update("heartbeat", "timeout_s")),
    "max_payload_bytes": Convention("limits.max_payload_bytes", _update("limits", "max_payload_bytes")),
    "rate_per_s": Convention("limits.rate_per_s", _update("limits", "rate_per_s")),
    "max_connections_per_ip": Convention(
        "limits.max_connections_per_ip", _update("limits", "max_connections_per_ip")
    ),
    "outbound_queue_size": Convention("limits.outbound_queue_size", _update("limits", "outbound_queue_size")),
    "jwt_algorithms": Convention("auth.algorithms", _update("auth", "algorithms")),
    "jwt_audience": Convention("auth.audience", _update("auth", "audience")),
    "jwt_issuer": Convention("auth.issuer", _update("auth", "issuer")),
    "namespaces": Convention("channels.namespaces", _add_namespaces),
    "reconnect_cap_s": Convention("reconnect", _update("reconnect", "cap_s")),
    "server_api": Convention("server_api", _decided_with_backend_access),
    "publisher": Convention("publisher", _decided_with_backend_access),
    "hooks": Convention("hooks", _decided_with_backend_access),
    "api_port": Convention("server_api.listen", _decided_with_backend_access),
    "workers_per_instance": Convention("scaling.workers", _decided_with_deployment),
    "kubernetes": Convention("deploy.kubernetes", _decided_with_deployment),
    "existing_app": Convention("deploy.shape", _decided_with_deployment),
    "mount_in_app": Convention("deploy.shape", _decided_with_deployment),
    "client_protocol": Convention("protocol.layer", _decided_with_protocol_layer),
}
"""Every memory convention, by its name in ``conventions``: the one table that knows them all
(``tests/unit/test_architecture.py`` keeps it equal to the fields of ``Conventions``)."""


def convention_decisions() -> dict[str, str]:
    """``{convention name: decision key}``: how regenerate attributes a change to memory."""
    return {name: rule.decision for name, rule in CONVENTIONS.items()}


def _apply_conventions(conv: Conventions, d: _Decisions, draft: _Draft, req: Requirements) -> str | None:
    """Record every memory override as a decision, lay it onto ``draft``; return the preferred broker.

    Conventions apply in the order of their fields, after every table decision, so each override
    is recorded with the value the table chose.
    """
    preferred_broker: str | None = None
    for name, value in conv.model_dump(exclude_none=True, mode="json").items():
        rule = CONVENTIONS[name]
        if name == "transport" and Transport(value) not in TRANSPORTS_AVAILABLE:
            d.add(
                rule.decision,
                "websockets",
                f"memory asks for transport {value}, which this wsforge does not ship yet; kept websockets.",
                Source.MEMORY,
            )
            continue
        if name == "preferred_broker":
            preferred_broker = value  # recorded by _decide_scaling, which knows whether it applies
            continue
        if rule.apply is _decided_with_backend_access or rule.apply is _decided_with_deployment:
            continue
        if name == "envelope_fields":
            value = {k: v for k, v in value.items() if v is not None}
        previous = d.rows.get(rule.decision)
        before = f" (the table chose {previous.value!r})" if previous is not None else ""
        d.add(
            rule.decision,
            value,
            f"memory convention `{name}` = {value!r} overrides the decision table{before}.",
            Source.MEMORY,
        )
        rule.apply(draft, value, req)
    return preferred_broker
