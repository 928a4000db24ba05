"""The rule catalogue: one pure function per rule, registered with its id, severity, why and fix.

Each function takes an :class:`~wsforge.spec.ArchitectureSpec` and yields :class:`Hit` values for
the keys that break the rule; it reads nothing else, so a rule is tested by building a spec.
Ids are stable (``WSF-<area>-<nnn>``) and documented in ``docs/review-rules.md``; never reuse a
retired id. Thresholds are the numbers an experienced real-time engineer would challenge in a
design review, and the ``why`` of each rule says where the number comes from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from ..requirements import ClientEnvironment, Durability, LatencyClass, MessagePattern
from ..spec import ArchitectureSpec, Backpressure, ChannelAuth, PublisherKind, ScalingStrategy
from .model import Criterion, Hit, Rule, Severity

RULES: list[Rule] = []
"""Every spec rule, in catalogue order."""

Check = Callable[[ArchitectureSpec], Iterator[Hit]]

PROXY_IDLE_TIMEOUT_S = 60.0
"""AWS ALB, nginx ``proxy_read_timeout`` and most ingress controllers close idle sockets at 60 s."""
KUBERNETES_GRACE_S = 30.0
"""Kubernetes' default ``terminationGracePeriodSeconds``: after it the pod is killed."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
DURABLE_STRATEGIES = frozenset(
    {ScalingStrategy.REDIS_STREAMS, ScalingStrategy.NATS, ScalingStrategy.RABBITMQ}
)
WILDCARD_HOSTS = frozenset({"", "*", "0.0.0.0", "::"})  # noqa: S104 - recognised, never bound
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HOOK_TIMEOUT_CEILING_MS: dict[LatencyClass, int] = {
    LatencyClass.REALTIME: 500,
    LatencyClass.INTERACTIVE: 2000,
}
"""Twice step 2's hook deadline for the latency class: a hook that may take longer holds every
handshake, subscribe or publish behind it well past what the requirements promise."""
HOOK_NAMES = ("connect", "subscribe", "publish", "disconnect")
SENSITIVE_NAMESPACE = re.compile(r"^(user|users|private|dm|direct|account|admin|inbox)s?$")


def rule(
    rule_id: str,
    criterion: Criterion,
    severity: Severity,
    title: str,
    *,
    why: str,
    fix: str,
    looks_at: tuple[str, ...] = (),
) -> Callable[[Check], Check]:
    """Register ``check`` in :data:`RULES` under ``rule_id``."""

    def register(check: Check) -> Check:
        if any(existing.rule_id == rule_id for existing in RULES):
            raise RuntimeError(f"duplicate rule id {rule_id}")
        RULES.append(Rule(rule_id, criterion, severity, title, why, fix, check, looks_at))
        return check

    return register


def _namespaces(spec: ArchitectureSpec) -> Iterator[tuple[tuple[str, ...], str]]:
    for index, ns in enumerate(spec.channels.namespaces):
        yield ("channels", "namespaces", str(index)), ns.name


def _needs_replay(spec: ArchitectureSpec) -> bool:
    return spec.requirements.durability in (Durability.REPLAY, Durability.PERSISTENT)


def _client_publish_rate(spec: ArchitectureSpec) -> float:
    """Messages per second one connection is expected to send, when clients publish at all."""
    req = spec.requirements
    if not {MessagePattern.BIDIRECTIONAL, MessagePattern.REQUEST_RESPONSE} & set(req.message_patterns):
        return 0.0
    return req.messages_per_second / max(req.concurrent_connections, 1)


# --- resilience ---------------------------------------------------------------------------------


@rule(
    "WSF-RES-001",
    Criterion.RESILIENCE,
    Severity.ERROR,
    "Heartbeat interval at or above the usual proxy idle timeout",
    why="Load balancers and reverse proxies close a WebSocket that has been idle for 60 s (ALB, "
    "nginx proxy_read_timeout). Without a ping inside that window quiet clients are cut off and "
    "reconnect in waves.",
    fix="Set heartbeat.interval_s to 20-30 s (well under 60 s).",
    looks_at=("heartbeat.interval_s",),
)
def heartbeat_interval_too_long(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.heartbeat.interval_s >= PROXY_IDLE_TIMEOUT_S:
        yield Hit(("heartbeat", "interval_s"), f"heartbeat.interval_s = {spec.heartbeat.interval_s:g}")


@rule(
    "WSF-RES-002",
    Criterion.RESILIENCE,
    Severity.WARNING,
    "Heartbeat timeout too short for the client networks",
    why="A pong that takes longer than the timeout closes the connection with 1011. Mobile and IoT "
    "radios wake up slowly: under 5 s (2 s for desktop/server clients) healthy clients flap.",
    fix="Raise heartbeat.timeout_s to at least 5 s for mobile/IoT clients (2 s otherwise).",
    looks_at=("heartbeat.timeout_s",),
)
def heartbeat_timeout_too_short(spec: ArchitectureSpec) -> Iterator[Hit]:
    slow = {ClientEnvironment.MOBILE, ClientEnvironment.IOT} & set(spec.requirements.client_environments)
    floor = 5.0 if slow else 2.0
    if spec.heartbeat.timeout_s < floor:
        yield Hit(
            ("heartbeat", "timeout_s"),
            f"heartbeat.timeout_s = {spec.heartbeat.timeout_s:g} < {floor:g} s",
        )


@rule(
    "WSF-RES-003",
    Criterion.RESILIENCE,
    Severity.WARNING,
    "Dead peers detected too late",
    why="A peer that vanished without a close keeps its slot, its subscriptions and its outbound "
    "queue until interval + timeout elapse. Over 2 minutes, dead connections pile up after every "
    "network blip and presence shows users who left.",
    fix="Keep heartbeat.interval_s + heartbeat.timeout_s at or under 120 s.",
    looks_at=("heartbeat.interval_s", "heartbeat.timeout_s"),
)
def dead_peer_detection_slow(spec: ArchitectureSpec) -> Iterator[Hit]:
    total = spec.heartbeat.interval_s + spec.heartbeat.timeout_s
    if total > 120:
        yield Hit(("heartbeat", "timeout_s"), f"interval_s + timeout_s = {total:g} s")


@rule(
    "WSF-RES-004",
    Criterion.RESILIENCE,
    Severity.ERROR,
    "Client reconnect without jitter",
    why="After a deploy or an outage every client reconnects on the same schedule; without jitter "
    "the retries arrive in synchronized waves (thundering herd) and knock the recovering servers "
    "over again.",
    fix="Set reconnect.jitter to full (or equal).",
    looks_at=("reconnect.jitter",),
)
def reconnect_without_jitter(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.reconnect.jitter == "none":
        yield Hit(("reconnect", "jitter"), "reconnect.jitter = none")


@rule(
    "WSF-RES-005",
    Criterion.RESILIENCE,
    Severity.ERROR,
    "Reconnect backoff cap below its base",
    why="The cap bounds the exponential delay; a cap under the base means the backoff never grows "
    "and clients retry at a fixed, short interval while the server is down.",
    fix="Make reconnect.cap_s larger than reconnect.base_s (e.g. base 0.5 s, cap 30 s).",
    looks_at=("reconnect.base_s", "reconnect.cap_s"),
)
def reconnect_cap_below_base(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.reconnect.cap_s <= spec.reconnect.base_s:
        yield Hit(
            ("reconnect", "cap_s"),
            f"reconnect.cap_s = {spec.reconnect.cap_s:g} <= base_s = {spec.reconnect.base_s:g}",
        )


@rule(
    "WSF-RES-006",
    Criterion.RESILIENCE,
    Severity.WARNING,
    "Reconnect backoff cap too long",
    why="With a cap over 5 minutes a client that backed off during an outage stays offline for "
    "minutes after the server is back; users see a dead app.",
    fix="Keep reconnect.cap_s at or under 300 s (30-60 s is typical).",
    looks_at=("reconnect.cap_s",),
)
def reconnect_cap_too_long(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.reconnect.cap_s > 300:
        yield Hit(("reconnect", "cap_s"), f"reconnect.cap_s = {spec.reconnect.cap_s:g}")


@rule(
    "WSF-RES-007",
    Criterion.RESILIENCE,
    Severity.WARNING,
    "Reconnect backoff base too small",
    why="A first retry under 100 ms turns a server restart into a burst of handshakes from every "
    "client at once, before jitter has any room to spread them.",
    fix="Set reconnect.base_s to at least 0.1 s (0.5-1 s is typical).",
    looks_at=("reconnect.base_s",),
)
def reconnect_base_too_small(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.reconnect.base_s < 0.1:
        yield Hit(("reconnect", "base_s"), f"reconnect.base_s = {spec.reconnect.base_s:g}")


@rule(
    "WSF-RES-008",
    Criterion.RESILIENCE,
    Severity.WARNING,
    "Broker circuit breaker reacts too slowly",
    why="While the breaker is closed every publish waits on a dead broker. A threshold over 50 "
    "failures or a reset timeout over 2 minutes keeps instances stalled (or degraded) far longer "
    "than the broker outage itself.",
    fix="Use circuit_breaker.failure_threshold <= 50 and reset_timeout_s <= 120.",
    looks_at=("circuit_breaker.failure_threshold", "circuit_breaker.reset_timeout_s"),
)
def circuit_breaker_slow(spec: ArchitectureSpec) -> Iterator[Hit]:
    cb = spec.circuit_breaker
    if cb.failure_threshold > 50:
        yield Hit(("circuit_breaker", "failure_threshold"), f"failure_threshold = {cb.failure_threshold}")
    if cb.reset_timeout_s > 120:
        yield Hit(("circuit_breaker", "reset_timeout_s"), f"reset_timeout_s = {cb.reset_timeout_s:g}")


@rule(
    "WSF-RES-009",
    Criterion.RESILIENCE,
    Severity.WARNING,
    "Shutdown grace longer than the orchestrator waits",
    why="Kubernetes kills a pod 30 s after SIGTERM by default. A longer grace means connections are "
    "cut without the 1001 close that tells clients to resume, exactly during deploys. (With "
    "deploy.kubernetes the rendered manifests set the period from deploy.termination_grace_s, "
    "which WSF-RES-011 checks instead.)",
    fix="Keep shutdown.grace_s under 30 s or raise terminationGracePeriodSeconds to match "
    "(deploy.termination_grace_s when wsforge renders the manifests).",
    looks_at=("shutdown.grace_s", "deploy.kubernetes"),
)
def shutdown_grace_too_long(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.deploy.kubernetes:
        return  # the rendered manifests set terminationGracePeriodSeconds: WSF-RES-011 checks it
    if spec.shutdown.grace_s >= KUBERNETES_GRACE_S:
        yield Hit(("shutdown", "grace_s"), f"shutdown.grace_s = {spec.shutdown.grace_s:g}")


@rule(
    "WSF-RES-010",
    Criterion.RESILIENCE,
    Severity.WARNING,
    "Event hook deadline too long for the latency class",
    why="A connect, subscribe or publish hook is an HTTP call to the application in the path of "
    "that operation, and the client waits for it. A deadline over twice step 2's (250 ms for "
    "sub_100ms, 1 s for 1_2s) lets a slow application hold every handshake or publish that long "
    "before the hook fails closed, and a hung one fills the server with waiting requests.",
    fix="Set hooks.<name>.timeout_ms to at most 500 (sub_100ms) or 2000 (1_2s); 10 ms is the floor "
    "the spec accepts.",
    looks_at=(
        "hooks.connect.timeout_ms",
        "hooks.subscribe.timeout_ms",
        "hooks.publish.timeout_ms",
        "hooks.disconnect.timeout_ms",
        "requirements.latency_class",
    ),
)
def hook_timeout_too_long(spec: ArchitectureSpec) -> Iterator[Hit]:
    ceiling = HOOK_TIMEOUT_CEILING_MS[spec.requirements.latency_class]
    for name in HOOK_NAMES:
        hook = getattr(spec.hooks, name)
        if hook.enabled and hook.timeout_ms > ceiling:
            yield Hit(
                ("hooks", name, "timeout_ms"),
                f"hooks.{name}.timeout_ms = {hook.timeout_ms} > {ceiling} "
                f"(latency class {spec.requirements.latency_class.value})",
            )


@rule(
    "WSF-RES-011",
    Criterion.RESILIENCE,
    Severity.ERROR,
    "Kubernetes kills pods before they drain",
    why="A deleted pod first sleeps deploy.prestop_s in its preStop hook (so the endpoints drop it), "
    "then drains for up to shutdown.grace_s after SIGTERM; the kubelet sends SIGKILL "
    "deploy.termination_grace_s after the start. At or below the sum, the connections still open "
    "are cut without the 1001 close that tells clients to resume, on every deploy and scale-down.",
    fix="Set deploy.termination_grace_s above deploy.prestop_s + shutdown.grace_s (step 2 adds 5 s), "
    "or shorten one of them.",
    looks_at=("deploy.termination_grace_s", "deploy.prestop_s", "shutdown.grace_s", "deploy.kubernetes"),
)
def termination_grace_too_short(spec: ArchitectureSpec) -> Iterator[Hit]:
    deploy = spec.deploy
    needed = deploy.prestop_s + spec.shutdown.grace_s
    if deploy.kubernetes and deploy.termination_grace_s <= needed:
        yield Hit(
            ("deploy", "termination_grace_s"),
            f"deploy.termination_grace_s = {deploy.termination_grace_s} <= prestop_s {deploy.prestop_s:g} "
            f"+ shutdown.grace_s {spec.shutdown.grace_s:g} = {needed:g}",
        )


# --- integrity ----------------------------------------------------------------------------------


@rule(
    "WSF-INT-001",
    Criterion.INTEGRITY,
    Severity.ERROR,
    "Replay required but no namespace keeps history",
    why="The requirements ask that reconnecting clients get what they missed, but with "
    "history_size 0 everywhere a resume by since_seq can only answer 'resync': messages sent "
    "during a disconnect are lost.",
    fix="Give the namespaces that carry messages a history_size (and history_ttl_s).",
    looks_at=("requirements.durability", "channels.namespaces[*].history_size"),
)
def replay_without_history(spec: ArchitectureSpec) -> Iterator[Hit]:
    if _needs_replay(spec) and all(ns.history_size == 0 for ns in spec.channels.namespaces):
        yield Hit(
            ("channels", "namespaces"),
            f"requirements.durability = {spec.requirements.durability.value}, every history_size = 0",
        )


@rule(
    "WSF-INT-002",
    Criterion.INTEGRITY,
    Severity.ERROR,
    "Persistent messages on a broker that forgets them",
    why="durability: persistent means messages survive a restart. The in-memory broker and Redis "
    "pub/sub keep nothing once a process restarts, so the promise is broken on the first deploy.",
    fix="Use scaling.strategy redis_streams or nats (JetStream) for persistent durability.",
    looks_at=("requirements.durability", "scaling.strategy"),
)
def persistent_without_durable_broker(spec: ArchitectureSpec) -> Iterator[Hit]:
    if (
        spec.requirements.durability == Durability.PERSISTENT
        and spec.scaling.strategy not in DURABLE_STRATEGIES
    ):
        yield Hit(("scaling", "strategy"), f"scaling.strategy = {spec.scaling.strategy.value}")


@rule(
    "WSF-INT-003",
    Criterion.INTEGRITY,
    Severity.ERROR,
    "Durable namespace silently drops messages under backpressure",
    why="drop_oldest and coalesce discard queued events for a slow reader without telling it; on a "
    "durable channel the reader must instead be disconnected (4009) so it resumes from its last "
    "seq and misses nothing.",
    fix="Set backpressure: disconnect on durable namespaces.",
    looks_at=("channels.namespaces[*].backpressure",),
)
def durable_namespace_drops(spec: ArchitectureSpec) -> Iterator[Hit]:
    for (path, name), ns in zip(_namespaces(spec), spec.channels.namespaces, strict=True):
        if ns.durable and ns.backpressure != Backpressure.DISCONNECT:
            yield Hit(
                (*path, "backpressure"), f"namespace {name}: durable, backpressure = {ns.backpressure.value}"
            )


@rule(
    "WSF-INT-004",
    Criterion.INTEGRITY,
    Severity.ERROR,
    "Durable namespace without history",
    why="A durable namespace promises that a reader who was disconnected can resume; with "
    "history_size 0 there is nothing to resume from.",
    fix="Give the namespace a history_size large enough to cover a reconnect (cap_s x message rate).",
    looks_at=("channels.namespaces[*].history_size",),
)
def durable_namespace_without_history(spec: ArchitectureSpec) -> Iterator[Hit]:
    for (path, name), ns in zip(_namespaces(spec), spec.channels.namespaces, strict=True):
        if ns.durable and ns.history_size == 0:
            yield Hit((*path, "history_size"), f"namespace {name}: durable, history_size = 0")


@rule(
    "WSF-INT-005",
    Criterion.INTEGRITY,
    Severity.WARNING,
    "Client publishes without an idempotency window",
    why="The client resends unacknowledged publishes after a reconnect (offline queue). With "
    "idempotency_window_s 0 the server cannot recognise the retry by msg_id and delivers the "
    "message twice.",
    fix="Set limits.idempotency_window_s (120 s by default).",
    looks_at=("limits.idempotency_window_s",),
)
def publish_without_idempotency(spec: ArchitectureSpec) -> Iterator[Hit]:
    publishes = any(ns.client_publish for ns in spec.channels.namespaces)
    if publishes and spec.limits.idempotency_window_s == 0:
        yield Hit(("limits", "idempotency_window_s"), "limits.idempotency_window_s = 0")


@rule(
    "WSF-INT-006",
    Criterion.INTEGRITY,
    Severity.WARNING,
    "Idempotency window shorter than the reconnect backoff cap",
    why="A publish retried after the longest backoff arrives after the server forgot its msg_id, "
    "so exactly the retries that follow an outage are duplicated.",
    fix="Make limits.idempotency_window_s at least 2 x reconnect.cap_s.",
    looks_at=("limits.idempotency_window_s", "reconnect.cap_s"),
)
def idempotency_window_short(spec: ArchitectureSpec) -> Iterator[Hit]:
    window = spec.limits.idempotency_window_s
    publishes = any(ns.client_publish for ns in spec.channels.namespaces)
    if publishes and 0 < window < spec.reconnect.cap_s:
        yield Hit(
            ("limits", "idempotency_window_s"),
            f"idempotency_window_s = {window} < reconnect.cap_s = {spec.reconnect.cap_s:g}",
        )


@rule(
    "WSF-INT-007",
    Criterion.INTEGRITY,
    Severity.ERROR,
    "Broker publisher library on the in-memory broker",
    why="publisher.kind broker renders a library that publishes straight through the broker from "
    "the backend's own process. The in-memory broker lives inside the server process: a separate "
    "process gets a broker of its own, so its publishes reach no subscriber and are lost without an "
    "error.",
    fix="Set publisher.kind to http (the server API's client), or move scaling.strategy to "
    "redis_pubsub, redis_streams or nats.",
    looks_at=("publisher.kind", "scaling.strategy"),
)
def broker_publisher_on_memory(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.publisher.kind == PublisherKind.BROKER and spec.scaling.strategy == ScalingStrategy.SINGLE:
        yield Hit(("publisher", "kind"), "publisher.kind = broker, scaling.strategy = single (memory://)")


@rule(
    "WSF-INT-008",
    Criterion.INTEGRITY,
    Severity.ERROR,
    "HTTP publisher without the server API",
    why="publisher.kind http means the backend publishes through the server API, but with "
    "server_api.enabled false no API is rendered: the backend has no way in.",
    fix="Set server_api.enabled to true, or publisher.kind to broker (with a Redis or NATS broker) or none.",
    looks_at=("publisher.kind", "server_api.enabled"),
)
def http_publisher_without_api(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.publisher.kind == PublisherKind.HTTP and not spec.server_api.enabled:
        yield Hit(("publisher", "kind"), "publisher.kind = http, server_api.enabled = false")


# --- security -----------------------------------------------------------------------------------


@rule(
    "WSF-SEC-001",
    Criterion.SECURITY,
    Severity.ERROR,
    "Protected namespace without authentication",
    why="With auth.mode none no connection has an identity, so an 'authenticated' or 'private' "
    "namespace is either unreachable or, worse, enforced by nothing.",
    fix="Set auth.mode to jwt (or cookie), or make the namespace public if it really is.",
    looks_at=("auth.mode", "channels.namespaces[*].auth"),
)
def protected_namespace_without_auth(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.auth.mode != "none":
        return
    for (path, name), ns in zip(_namespaces(spec), spec.channels.namespaces, strict=True):
        if ns.auth != ChannelAuth.PUBLIC:
            yield Hit((*path, "auth"), f"auth.mode = none, namespace {name}: auth = {ns.auth.value}")


@rule(
    "WSF-SEC-002",
    Criterion.SECURITY,
    Severity.WARNING,
    "Anonymous clients may publish",
    why="Without authentication anyone who can reach the endpoint can write to every channel "
    "clients may publish to: spam, impersonation, abuse of fan-out.",
    fix="Require auth (auth.mode jwt) or set client_publish: false on the namespaces.",
    looks_at=("auth.mode", "channels.namespaces[*].client_publish"),
)
def anonymous_publish(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.auth.mode != "none":
        return
    for (path, name), ns in zip(_namespaces(spec), spec.channels.namespaces, strict=True):
        if ns.client_publish:
            yield Hit((*path, "client_publish"), f"auth.mode = none, namespace {name}: client_publish = true")


@rule(
    "WSF-SEC-003",
    Criterion.SECURITY,
    Severity.ERROR,
    "Origin allowlist allows any site",
    why="Browsers attach cookies and ambient credentials to cross-site WebSocket handshakes; with "
    "'*' any web page a user visits can open a socket as that user (cross-site WebSocket "
    "hijacking).",
    fix="List the exact origins (https://app.example.com) in allowed_origins.",
    looks_at=("allowed_origins",),
)
def origin_wildcard(spec: ArchitectureSpec) -> Iterator[Hit]:
    for index, origin in enumerate(spec.allowed_origins):
        if origin.strip() == "*" or "*" in origin:
            yield Hit(("allowed_origins", str(index)), f"allowed_origins[{index}] = {origin!r}")


@rule(
    "WSF-SEC-004",
    Criterion.SECURITY,
    Severity.WARNING,
    "Browser clients but no allowed origin",
    why="Browsers always send Origin and the server refuses origins that are not listed (403), so "
    "the browser clients the requirements name cannot connect at all.",
    fix="Add the web app's origins to allowed_origins.",
    looks_at=("allowed_origins", "requirements.client_environments"),
)
def browser_without_origins(spec: ArchitectureSpec) -> Iterator[Hit]:
    if ClientEnvironment.BROWSER in spec.requirements.client_environments and not spec.allowed_origins:
        yield Hit(("allowed_origins",), "allowed_origins = [] with browser clients")


@rule(
    "WSF-SEC-005",
    Criterion.SECURITY,
    Severity.WARNING,
    "Plain-HTTP origin for a non-local host",
    why="An http:// origin means the page, and so the WebSocket (ws://), runs without TLS: tokens "
    "and messages travel in clear text and proxies may tamper with the upgrade. Production needs "
    "https:// pages and wss://.",
    fix="Use https:// origins (and wss:// URLs) for every host but localhost.",
    looks_at=("allowed_origins",),
)
def plain_http_origin(spec: ArchitectureSpec) -> Iterator[Hit]:
    for index, origin in enumerate(spec.allowed_origins):
        parts = urlsplit(origin)
        if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
            yield Hit(("allowed_origins", str(index)), f"allowed_origins[{index}] = {origin!r}")


@rule(
    "WSF-SEC-006",
    Criterion.SECURITY,
    Severity.ERROR,
    "Credentials written into the broker URL",
    why="wsforge.yaml is committed and copied into images; a password in scaling.broker_url leaks with it.",
    fix="Remove the password from scaling.broker_url and pass it at runtime (WS_BROKER_URL env).",
    looks_at=("scaling.broker_url",),
)
def broker_url_with_password(spec: ArchitectureSpec) -> Iterator[Hit]:
    if urlsplit(spec.scaling.broker_url).password:
        yield Hit(("scaling", "broker_url"), "scaling.broker_url contains a password")


@rule(
    "WSF-SEC-007",
    Criterion.SECURITY,
    Severity.ERROR,
    "Unsafe JWT algorithm list",
    why="'none' accepts unsigned tokens. Mixing HMAC (HS*) with public-key algorithms (RS*/ES*/"
    "PS*/EdDSA) enables key confusion: a token signed with the public key as an HMAC secret "
    "verifies.",
    fix="Pin auth.algorithms to one family, e.g. [HS256] or [RS256].",
    looks_at=("auth.algorithms",),
)
def unsafe_jwt_algorithms(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.auth.mode == "none":
        return
    algorithms = [a.upper() for a in spec.auth.algorithms]
    if "NONE" in algorithms:
        yield Hit(("auth", "algorithms"), "auth.algorithms contains 'none'")
    elif any(a.startswith("HS") for a in algorithms) and any(not a.startswith("HS") for a in algorithms):
        yield Hit(
            ("auth", "algorithms"), f"auth.algorithms mixes HMAC and public-key: {spec.auth.algorithms}"
        )


@rule(
    "WSF-SEC-008",
    Criterion.SECURITY,
    Severity.WARNING,
    "Token in the query string without browser clients",
    why="Query strings end up in access logs, proxy logs and Referer headers. Only browsers need "
    "them (they cannot set headers); servers, mobile apps and devices can send Authorization.",
    fix="Drop 'query' from auth.token_sources when no client is a browser.",
    looks_at=("auth.token_sources",),
)
def query_token_without_browser(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.auth.mode == "none" or "query" not in spec.auth.token_sources:
        return
    if ClientEnvironment.BROWSER not in spec.requirements.client_environments:
        yield Hit(("auth", "token_sources"), "auth.token_sources includes query, no browser clients")


@rule(
    "WSF-SEC-009",
    Criterion.SECURITY,
    Severity.WARNING,
    "JWT clock leeway too generous",
    why="Leeway lets expired tokens in; over a minute a revoked or stolen short-lived token keeps "
    "working long after it should.",
    fix="Keep auth.leeway_s at or under 60 s (5-30 s covers clock skew).",
    looks_at=("auth.leeway_s",),
)
def jwt_leeway_too_long(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.auth.mode != "none" and spec.auth.leeway_s > 60:
        yield Hit(("auth", "leeway_s"), f"auth.leeway_s = {spec.auth.leeway_s}")


@rule(
    "WSF-SEC-010",
    Criterion.SECURITY,
    Severity.ERROR,
    "Rate limit below the required message rate",
    why="The requirements imply each connection sends about messages_per_second / "
    "concurrent_connections messages per second; a limit under that answers legitimate traffic "
    "with rate_limited and then closes it with 4008.",
    fix="Raise limits.rate_per_s above the per-connection rate (with headroom for bursts).",
    looks_at=("limits.rate_per_s",),
)
def rate_limit_below_requirement(spec: ArchitectureSpec) -> Iterator[Hit]:
    needed = _client_publish_rate(spec)
    if needed > spec.limits.rate_per_s:
        yield Hit(
            ("limits", "rate_per_s"),
            f"limits.rate_per_s = {spec.limits.rate_per_s:g} < {needed:.3g}/s needed",
        )


@rule(
    "WSF-SEC-011",
    Criterion.SECURITY,
    Severity.WARNING,
    "Rate limit too loose to stop a flood",
    why="At 1000 messages per second per connection one client can saturate a server's dispatch "
    "loop and its fan-out; the limit no longer protects anyone.",
    fix="Lower limits.rate_per_s to a few times the expected per-connection rate.",
    looks_at=("limits.rate_per_s", "limits.rate_burst"),
)
def rate_limit_too_loose(spec: ArchitectureSpec) -> Iterator[Hit]:
    ceiling = max(1000.0, 10 * _client_publish_rate(spec))
    if spec.limits.rate_per_s >= ceiling:
        yield Hit(("limits", "rate_per_s"), f"limits.rate_per_s = {spec.limits.rate_per_s:g}")
    if spec.limits.rate_burst >= 10 * ceiling:
        yield Hit(("limits", "rate_burst"), f"limits.rate_burst = {spec.limits.rate_burst}")


@rule(
    "WSF-SEC-012",
    Criterion.SECURITY,
    Severity.ERROR,
    "Payload cap below the expected message size",
    why="Messages larger than max_payload_bytes close the connection with 1009; with a cap under "
    "twice the average payload a good share of legitimate messages is refused.",
    fix="Set limits.max_payload_bytes to at least 2 x avg_payload_bytes (plus envelope overhead).",
    looks_at=("limits.max_payload_bytes", "requirements.avg_payload_bytes"),
)
def payload_cap_too_small(spec: ArchitectureSpec) -> Iterator[Hit]:
    needed = 2 * spec.requirements.avg_payload_bytes
    if spec.limits.max_payload_bytes < needed:
        yield Hit(
            ("limits", "max_payload_bytes"),
            f"limits.max_payload_bytes = {spec.limits.max_payload_bytes} < 2 x avg payload = {needed}",
        )


@rule(
    "WSF-SEC-013",
    Criterion.SECURITY,
    Severity.WARNING,
    "Payload cap far above the expected message size",
    why="The server buffers a whole message before it can refuse it; a cap of many megabytes lets "
    "a handful of clients exhaust memory.",
    fix="Cap limits.max_payload_bytes near 16 x avg_payload_bytes (at most 4 MiB unless needed).",
    looks_at=("limits.max_payload_bytes",),
)
def payload_cap_too_large(spec: ArchitectureSpec) -> Iterator[Hit]:
    ceiling = max(4 * 1024 * 1024, 16 * spec.requirements.avg_payload_bytes)
    if spec.limits.max_payload_bytes > ceiling:
        yield Hit(
            ("limits", "max_payload_bytes"), f"limits.max_payload_bytes = {spec.limits.max_payload_bytes}"
        )


@rule(
    "WSF-SEC-014",
    Criterion.SECURITY,
    Severity.WARNING,
    "Per-user namespace readable by anyone",
    why="Namespaces named like user, dm, private, inbox or admin usually carry one person's data; "
    "auth: public lets any connection subscribe to anyone's channel.",
    fix="Set the namespace's auth to private (user:<sub> only) or authenticated.",
    looks_at=("channels.namespaces[*].auth",),
)
def sensitive_namespace_public(spec: ArchitectureSpec) -> Iterator[Hit]:
    for (path, name), ns in zip(_namespaces(spec), spec.channels.namespaces, strict=True):
        if ns.auth == ChannelAuth.PUBLIC and SENSITIVE_NAMESPACE.match(name.lower()):
            yield Hit((*path, "auth"), f"namespace {name}: auth = public")


@rule(
    "WSF-SEC-015",
    Criterion.SECURITY,
    Severity.WARNING,
    "Per-IP connection cap not set below the instance cap",
    why="When max_connections_per_ip is at or above max_connections_total one address can take "
    "every slot of an instance, so the per-IP cap protects nothing.",
    fix="Set limits.max_connections_per_ip well below max_connections_total (mind NAT: 50-500).",
    looks_at=("limits.max_connections_per_ip", "limits.max_connections_total"),
)
def per_ip_cap_ineffective(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.limits.max_connections_per_ip >= spec.limits.max_connections_total:
        yield Hit(
            ("limits", "max_connections_per_ip"),
            f"max_connections_per_ip = {spec.limits.max_connections_per_ip} >= "
            f"max_connections_total = {spec.limits.max_connections_total}",
        )


@rule(
    "WSF-SEC-016",
    Criterion.SECURITY,
    Severity.ERROR,
    "Server API without an API key variable",
    why="The server API publishes to any channel and disconnects users. Its keys come from the "
    "environment variable named by server_api.keys_env; with no valid name there is no way to "
    "configure a key, so the API is either unusable or, in a hand-edited server, open.",
    fix="Set server_api.keys_env to an environment variable name (WS_API_KEYS) and put one or more "
    "comma-separated keys in it at runtime.",
    looks_at=("server_api.enabled", "server_api.keys_env"),
)
def server_api_without_keys(spec: ArchitectureSpec) -> Iterator[Hit]:
    api = spec.server_api
    if api.enabled and not ENV_NAME.match(api.keys_env.strip()):
        yield Hit(("server_api", "keys_env"), f"server_api.keys_env = {api.keys_env!r}")


def _api_host_kind(host: str) -> str:
    """loopback, private (a private network or a name: it depends), or public (wildcard, global)."""
    name = host.strip().strip("[]").lower()
    if name in WILDCARD_HOSTS:
        return "public"
    if name == "localhost":
        return "loopback"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return "private"
    if address.is_loopback:
        return "loopback"
    if address.is_private or address.is_link_local:
        return "private"
    return "public"


@rule(
    "WSF-SEC-017",
    Criterion.SECURITY,
    Severity.ERROR,
    "Server API bound to every interface or a public address",
    why="The API's calls are privileged (publish anywhere, disconnect users, read history). On "
    "0.0.0.0, :: or a public address anyone who reaches the host can try keys against it, and a "
    "leaked key is usable from the internet; that is why it has a listener of its own.",
    fix="Keep server_api.host at 127.0.0.1 (the default) and put backends on the same host or a "
    "sidecar; for a backend elsewhere bind a private-network address with WS_API_HOST.",
    looks_at=("server_api.host",),
)
def server_api_public(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.server_api.enabled and _api_host_kind(spec.server_api.host) == "public":
        yield Hit(("server_api", "host"), f"server_api.host = {spec.server_api.host!r}")


@rule(
    "WSF-SEC-018",
    Criterion.SECURITY,
    Severity.WARNING,
    "Server API reachable beyond this host",
    why="A private-network address or a host name exposes the API to every machine on that "
    "network; keys are then the only barrier. The spec's default is loopback, so this was chosen "
    "on purpose: check that the network is really private to your backends.",
    fix="Prefer server_api.host 127.0.0.1 and override per deployment with WS_API_HOST; firewall the "
    "API port to the backends' addresses.",
    looks_at=("server_api.host",),
)
def server_api_private_network(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.server_api.enabled and _api_host_kind(spec.server_api.host) == "private":
        yield Hit(("server_api", "host"), f"server_api.host = {spec.server_api.host!r}")


@rule(
    "WSF-SEC-019",
    Criterion.SECURITY,
    Severity.ERROR,
    "Hook namespace without the subscribe hook",
    why="auth: hook leaves the decision who may subscribe to the application's subscribe hook. "
    "With hooks.subscribe off nothing decides: the server would have to refuse every subscribe or "
    "let everyone in.",
    fix="Enable hooks.subscribe (memory conventions.hooks: [subscribe]) or give the namespace "
    "another auth (authenticated, private).",
    looks_at=("channels.namespaces[*].auth", "hooks.subscribe.enabled"),
)
def hook_namespace_without_hook(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.hooks.subscribe.enabled:
        return
    for (path, name), ns in zip(_namespaces(spec), spec.channels.namespaces, strict=True):
        if ns.auth == ChannelAuth.HOOK:
            yield Hit((*path, "auth"), f"namespace {name}: auth = hook, hooks.subscribe.enabled = false")


# --- scale ---------------------------------------------------------------------------------------


@rule(
    "WSF-SCL-001",
    Criterion.SCALE,
    Severity.ERROR,
    "Several instances without a broker",
    why="With strategy single each instance only delivers to its own clients: a message published "
    "on one instance never reaches subscribers connected to another.",
    fix="Use scaling.strategy redis_pubsub, redis_streams or nats when instances > 1.",
    looks_at=("scaling.strategy", "scaling.instances"),
)
def instances_without_broker(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.scaling.strategy == ScalingStrategy.SINGLE and spec.scaling.instances > 1:
        yield Hit(("scaling", "strategy"), f"strategy = single, instances = {spec.scaling.instances}")


@rule(
    "WSF-SCL-002",
    Criterion.SCALE,
    Severity.ERROR,
    "Too few instances for the connection target",
    why="instances x workers x connections_per_instance (a per-process figure) is the fleet's "
    "connection capacity; below the required concurrent connections, the surplus is refused with 503 at peak.",
    fix="Raise scaling.instances to ceil(concurrent_connections / (workers x connections_per_instance)).",
    looks_at=(
        "scaling.instances",
        "scaling.workers",
        "scaling.connections_per_instance",
        "requirements.concurrent_connections",
    ),
)
def connection_capacity_short(spec: ArchitectureSpec) -> Iterator[Hit]:
    capacity = spec.scaling.instances * max(1, spec.scaling.workers) * spec.scaling.connections_per_instance
    needed = spec.requirements.concurrent_connections
    if capacity < needed:
        yield Hit(("scaling", "instances"), f"capacity {capacity} connections < required {needed}")


@rule(
    "WSF-SCL-003",
    Criterion.SCALE,
    Severity.ERROR,
    "Too few instances for the delivery rate",
    why="Fan-out (messages x subscribers) is usually what saturates a WebSocket server; when the "
    "expected deliveries exceed instances x workers x deliveries_per_instance (per process), queues fill "
    "and events drop.",
    fix="Raise scaling.instances (or use a faster transport) until the delivery capacity covers the target.",
    looks_at=("scaling.expected_deliveries_per_second", "scaling.workers", "scaling.deliveries_per_instance"),
)
def delivery_capacity_short(spec: ArchitectureSpec) -> Iterator[Hit]:
    capacity = spec.scaling.instances * max(1, spec.scaling.workers) * spec.scaling.deliveries_per_instance
    if capacity < spec.scaling.expected_deliveries_per_second:
        yield Hit(
            ("scaling", "instances"),
            f"capacity {capacity}/s < expected {spec.scaling.expected_deliveries_per_second}/s",
        )


@rule(
    "WSF-SCL-004",
    Criterion.SCALE,
    Severity.ERROR,
    "Connection cap refuses the planned load",
    why="max_connections_total is enforced per instance; under concurrent_connections / instances "
    "the fleet refuses clients (503) before it reaches the target it was sized for.",
    fix="Set limits.max_connections_total to at least the planned connections per instance plus headroom.",
    looks_at=("limits.max_connections_total", "scaling.instances"),
)
def connection_cap_below_plan(spec: ArchitectureSpec) -> Iterator[Hit]:
    per_instance = -(-spec.requirements.concurrent_connections // spec.scaling.instances)
    if spec.limits.max_connections_total < per_instance:
        yield Hit(
            ("limits", "max_connections_total"),
            f"max_connections_total = {spec.limits.max_connections_total} "
            f"< {per_instance} planned per instance",
        )


@rule(
    "WSF-SCL-005",
    Criterion.SCALE,
    Severity.WARNING,
    "Connection cap above what an instance can serve",
    why="An instance that accepts twice the connections it was sized for degrades for everyone "
    "(latency, memory) instead of shedding load with 503 so the balancer tries another.",
    fix="Keep limits.max_connections_total within 2 x scaling.connections_per_instance.",
    looks_at=("limits.max_connections_total", "scaling.connections_per_instance"),
)
def connection_cap_above_capacity(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.limits.max_connections_total > 2 * spec.scaling.connections_per_instance:
        yield Hit(
            ("limits", "max_connections_total"),
            f"max_connections_total = {spec.limits.max_connections_total} > 2 x "
            f"connections_per_instance = {spec.scaling.connections_per_instance}",
        )


@rule(
    "WSF-SCL-006",
    Criterion.SCALE,
    Severity.WARNING,
    "Presence on very large channels",
    why="Every join and leave is fanned out to every member: with thousands of members per "
    "channel, presence traffic grows with the square of the audience and reconnect waves become "
    "event storms.",
    fix="Turn presence off for large broadcast namespaces, or expose counts instead of join/leave events.",
    looks_at=("channels.namespaces[*].presence", "requirements.avg_subscribers_per_channel"),
)
def presence_on_large_channels(spec: ArchitectureSpec) -> Iterator[Hit]:
    fanout = spec.requirements.avg_subscribers_per_channel or 0
    if fanout <= 1000:
        return
    for (path, name), ns in zip(_namespaces(spec), spec.channels.namespaces, strict=True):
        if ns.presence:
            yield Hit(
                (*path, "presence"), f"namespace {name}: presence with ~{fanout} subscribers per channel"
            )


@rule(
    "WSF-SCL-007",
    Criterion.SCALE,
    Severity.WARNING,
    "History kept per channel is very large",
    why="History is kept per channel, in the broker or in process memory; over 10,000 messages per "
    "channel times the number of channels is gigabytes, and replaying it floods a reconnecting client.",
    fix="Keep history_size at or under 10,000 and bound it in time with history_ttl_s.",
    looks_at=("channels.namespaces[*].history_size",),
)
def history_too_large(spec: ArchitectureSpec) -> Iterator[Hit]:
    for (path, name), ns in zip(_namespaces(spec), spec.channels.namespaces, strict=True):
        if ns.history_size > 10_000:
            yield Hit((*path, "history_size"), f"namespace {name}: history_size = {ns.history_size}")


@rule(
    "WSF-SCL-008",
    Criterion.SCALE,
    Severity.WARNING,
    "Outbound queues can outgrow memory",
    why="Each connection may hold outbound_queue_size events; at connections_per_instance slow "
    "readers of average size that is more than 4 GiB in one process.",
    fix="Lower limits.outbound_queue_size (and rely on backpressure policy and history).",
    looks_at=("limits.outbound_queue_size",),
)
def outbound_queues_too_big(spec: ArchitectureSpec) -> Iterator[Hit]:
    worst = (
        spec.limits.outbound_queue_size
        * spec.requirements.avg_payload_bytes
        * spec.scaling.connections_per_instance
    )
    if worst > 4 * 1024**3:
        yield Hit(("limits", "outbound_queue_size"), f"worst case {worst / 1024**3:.1f} GiB per instance")


@rule(
    "WSF-SCL-010",
    Criterion.SCALE,
    Severity.WARNING,
    "Autoscaler ceiling below the planned instances",
    why="The HorizontalPodAutoscaler's floor is scaling.instances, the count the capacity plan needs; "
    "a ceiling below it is a contradiction Kubernetes resolves by refusing the autoscaler "
    "(minReplicas > maxReplicas), so the plan's pods are never all started.",
    fix="Set deploy.max_replicas to at least scaling.instances (step 2 plans 3 x instances).",
    looks_at=("deploy.max_replicas", "scaling.instances", "deploy.kubernetes"),
)
def autoscaler_ceiling_below_plan(spec: ArchitectureSpec) -> Iterator[Hit]:
    scaled_out = spec.scaling.strategy != ScalingStrategy.SINGLE
    if spec.deploy.kubernetes and scaled_out and spec.deploy.max_replicas < spec.scaling.instances:
        yield Hit(
            ("deploy", "max_replicas"),
            f"deploy.max_replicas = {spec.deploy.max_replicas} < scaling.instances = {spec.scaling.instances}",
        )


@rule(
    "WSF-SCL-011",
    Criterion.SCALE,
    Severity.WARNING,
    "Kubernetes with the in-memory broker",
    why="The in-memory broker lives inside one process, so the manifests run one pod with no "
    "autoscaler and replace it with a Recreate rollout: every deploy, eviction or node failure "
    "disconnects every client, which is what running on Kubernetes is meant to avoid.",
    fix="Scale out over a broker (scaling.strategy redis_streams, redis_pubsub or nats), or turn "
    "deploy.kubernetes off and run the one instance with deploy/docker-compose.yml.",
    looks_at=("deploy.kubernetes", "scaling.strategy", "scaling.instances"),
)
def kubernetes_on_memory_broker(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.deploy.kubernetes and spec.scaling.strategy == ScalingStrategy.SINGLE:
        yield Hit(
            ("deploy", "kubernetes"),
            f"deploy.kubernetes = true, scaling.strategy = single, instances = {spec.scaling.instances}",
        )


@rule(
    "WSF-SCL-012",
    Criterion.SCALE,
    Severity.NOTE,
    "Mounted in the host app on the in-memory broker",
    why="The in-memory broker lives inside one process. Mounted in an ASGI or Django app, the "
    "endpoint runs in every process of that app: with `uvicorn --workers`, gunicorn or several "
    "replicas, each process has its own channels, and a message published in one never reaches "
    "clients connected to another, silently.",
    fix="Run the host app as one process, or scale out over a broker (scaling.strategy "
    "redis_streams, redis_pubsub or nats; WS_BROKER_URL) before adding processes.",
    looks_at=("host.mounted", "scaling.strategy"),
)
def mounted_on_memory_broker(spec: ArchitectureSpec) -> Iterator[Hit]:
    if spec.host.mounted and spec.scaling.strategy == ScalingStrategy.SINGLE:
        yield Hit(
            ("host", "mounted"),
            f"host.mounted = true in {spec.host.app.value}, scaling.strategy = single (memory://)",
        )


@rule(
    "WSF-SCL-013",
    Criterion.SCALE,
    Severity.WARNING,
    "Mounted where the host's ASGI stack needs far more cores",
    why="Mounted behind the host app's ASGI server, each core carries a fraction of what the "
    "standalone server does (step 2's capacity table, from the benchmark). Past a few times the "
    "standalone plan, the one deployment saved costs a fleet of extra pods and their broker "
    "connections.",
    fix="Run the endpoint standalone beside the app (memory convention mount_in_app: false, or "
    "host.mounted: false); the app publishes through the broker or the server API and mints the JWT.",
    looks_at=(
        "host.mounted",
        "requirements.concurrent_connections",
        "scaling.expected_deliveries_per_second",
        "transport",
    ),
)
def mounted_beyond_the_asgi_capacity(spec: ArchitectureSpec) -> Iterator[Hit]:
    if not spec.host.mounted:
        return
    from ..architecture import ASGI_CAPACITY, CAPACITY, HEADROOM, MOUNT_MAX_CORE_FACTOR

    def cores(connections: int, deliveries: int) -> int:
        by_conn = -(-spec.requirements.concurrent_connections // int(connections * HEADROOM))
        by_msgs = -(-spec.scaling.expected_deliveries_per_second // int(deliveries * HEADROOM))
        return max(1, by_conn, by_msgs)

    standalone = CAPACITY[spec.transport]
    alone = cores(standalone.connections, standalone.deliveries_per_s)
    mounted = cores(ASGI_CAPACITY.connections, ASGI_CAPACITY.deliveries_per_s)
    if mounted > max(MOUNT_MAX_CORE_FACTOR * alone, alone + 2):
        yield Hit(
            ("host", "mounted"),
            f"mounted in {spec.host.app.value}: {mounted} cores at the ASGI target's capacity against "
            f"{alone} standalone ({spec.transport.value})",
        )


@rule(
    "WSF-SCL-014",
    Criterion.SCALE,
    Severity.WARNING,
    "Every publish goes through RabbitMQ's one sequencer",
    why="RabbitMQ has no per-channel compare-and-set, so the adapter gives each publish its place "
    "through one single-active-consumer queue: one instance's event loop sequences the publishes of "
    "the whole deployment, however many instances there are. Past its capacity publishes queue up, "
    "their latency grows and they time out as broker_unavailable.",
    fix="Publish less (batch device readings into fewer messages), or scale out over Redis Streams or "
    "NATS JetStream, which order each channel inside the broker (memory convention preferred_broker).",
    looks_at=("scaling.strategy", "requirements.messages_per_second"),
)
def rabbitmq_sequencer_over_capacity(spec: ArchitectureSpec) -> Iterator[Hit]:
    from ..architecture import HEADROOM, RABBITMQ_SEQUENCER_PUBLISHES_PER_S

    rate = spec.requirements.messages_per_second
    if (
        spec.scaling.strategy == ScalingStrategy.RABBITMQ
        and rate > RABBITMQ_SEQUENCER_PUBLISHES_PER_S * HEADROOM
    ):
        yield Hit(
            ("scaling", "strategy"),
            f"scaling.strategy = rabbitmq, {rate} publishes/s against about "
            f"{RABBITMQ_SEQUENCER_PUBLISHES_PER_S} per sequencer",
        )


# --- memory -------------------------------------------------------------------------------------

RULE_ID_RE = re.compile(r"\bWSF-[A-Z]{3}-\d{3}\b")

KNOWN_ISSUE_RULE = Rule(
    "WSF-MEM-001",
    Criterion.MEMORY,
    Severity.WARNING,
    "Known issue from memory is still open",
    why="An earlier run (or a person) recorded this problem in the project's memory. Until it is "
    "fixed and removed from memory, every review repeats it so it is not forgotten. A known issue "
    "that names a rule id (WSF-...) counts as fixed as soon as that rule passes.",
    fix="Fix the issue, then remove it from memory (wsforge memory show NAME) and from known_issues.",
    check=lambda spec: iter(()),
    looks_at=("known_issues",),
)


CONTRACT_RULE = Rule(
    "WSF-MEM-002",
    Criterion.MEMORY,
    Severity.WARNING,
    "Change breaks clients built against the recorded protocol",
    why="Memory records the wire contract the last run generated (envelope, codecs, subprotocols, "
    "namespaces, each message's payload shape). Clients already deployed speak that contract; a "
    "renamed envelope field, a removed codec, namespace or message, a new required request field or a "
    "changed type makes them fail, and nothing in the new code tells them why.",
    fix="Keep the old contract (undo the memory or answer change), or ship the change as a new protocol "
    "version served next to the old one until old clients are gone (memory's versioning section). "
    "Once no old client remains, the next run records the new contract and the finding goes away.",
    check=lambda spec: iter(()),
    looks_at=("protocol.version", "protocol.subprotocols", "envelope"),
)


def contract_hits(old: dict[str, Any] | None, new: dict[str, Any]) -> Iterator[Hit]:
    """Hits for every change from memory's recorded contract ``old`` that breaks deployed clients."""
    from ..contract import breaking_changes

    for key, text in breaking_changes(old or {}, new):
        yield Hit(tuple(key.split(".")), text)


def known_issue_hits(issues: list[str], fired: set[str]) -> Iterator[Hit]:
    """Hits for the known issues that are still open.

    Args:
        issues: ``"<id>: <summary>"`` strings (spec ``known_issues`` plus memory's), deduplicated.
        fired: rule ids that produced findings in this review; an issue naming only rules that
            passed is considered fixed.
    """
    for index, issue in enumerate(issues):
        named = set(RULE_ID_RE.findall(issue))
        if named and not named & fired:
            continue
        yield Hit(("known_issues", str(index)), issue)
