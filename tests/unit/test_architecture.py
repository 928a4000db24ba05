"""Step 2: the decision tables, and memory conventions overriding them."""

from __future__ import annotations

from typing import Any

import pytest

from wsforge.architecture import design
from wsforge.memory import Conventions, MemoryEntry
from wsforge.requirements import Requirements, load_requirements
from wsforge.spec import Codec, ScalingStrategy, Source

from ..conftest import EXAMPLES


def _req(**changes: Any) -> Requirements:
    base = load_requirements(EXAMPLES / "chat.yaml").model_dump()
    base.update(changes)
    return Requirements.model_validate(base)


def _memory(**conventions: Any) -> MemoryEntry:
    return MemoryEntry(project="chat-demo", conventions=Conventions.model_validate(conventions))


def test_every_decision_has_a_rationale() -> None:
    """No decision without a sentence that says why."""
    for path in EXAMPLES.glob("*.yaml"):
        spec = design(load_requirements(path))
        assert spec.decisions
        for decision in spec.decisions:
            assert len(decision.rationale) > 20, decision


def test_small_chat_is_one_instance_with_memory_broker() -> None:
    """5k connections fit one instance; replay works from the in-memory history."""
    spec = design(_req())
    assert spec.scaling.strategy == ScalingStrategy.SINGLE
    assert spec.scaling.broker_url == "memory://"
    assert spec.scaling.instances == 1


def test_persistent_durability_needs_streams() -> None:
    """Messages that must survive restarts get Redis Streams and durable namespaces."""
    spec = design(_req(durability="persistent"))
    assert spec.scaling.strategy == ScalingStrategy.REDIS_STREAMS
    assert all(ns.durable for ns in spec.channels.namespaces)
    assert "persistent" in (spec.decision("scaling.strategy").rationale)  # type: ignore[union-attr]


def test_many_connections_scale_out_over_pubsub() -> None:
    """Ephemeral traffic beyond one instance goes over Redis pub/sub."""
    spec = design(_req(concurrent_connections=100_000, durability="ephemeral"))
    assert spec.scaling.strategy == ScalingStrategy.REDIS_PUBSUB
    assert spec.scaling.instances > 1
    assert all(ns.history_size == 0 for ns in spec.channels.namespaces)


def test_instance_count_follows_message_load() -> None:
    """Fan-out load alone can require more instances."""
    small = design(_req(messages_per_second=10))
    large = design(_req(messages_per_second=50_000, avg_subscribers_per_channel=50))
    assert large.scaling.instances > small.scaling.instances


def test_codec_for_devices_is_msgpack() -> None:
    """IoT/server clients without a browser get MessagePack first."""
    spec = design(_req(client_environments=["iot", "server"]))
    assert spec.protocol.codecs[0] == Codec.MSGPACK
    assert spec.protocol.subprotocols[0] == "wsforge.v1.msgpack"


def test_browser_gets_json_and_token_sources_for_browsers() -> None:
    """Browsers read JSON and cannot set headers, so other token sources are allowed."""
    spec = design(_req())
    assert spec.protocol.codecs[0] == Codec.JSON
    assert "subprotocol" in spec.auth.token_sources


def test_no_auth_drops_private_namespaces() -> None:
    """Without identities, private per-user channels cannot exist."""
    spec = design(_req(auth="none"))
    assert all(ns.auth.value == "public" for ns in spec.channels.namespaces)
    assert spec.decision("channels.private_dropped") is not None


@pytest.mark.parametrize(
    ("conventions", "check"),
    [
        ({"serialization": "msgpack"}, lambda s: s.protocol.codecs[0] == Codec.MSGPACK),
        ({"channel_separator": "."}, lambda s: s.channels.separator == "."),
        (
            {"envelope_fields": {"type": "t"}},
            lambda s: s.envelope.type == "t" and s.envelope.action == "action",
        ),
        ({"max_payload_bytes": 65536}, lambda s: s.limits.max_payload_bytes == 65536),
        ({"rate_per_s": 3}, lambda s: s.limits.rate_per_s == 3),
        ({"heartbeat_interval_s": 40}, lambda s: s.heartbeat.interval_s == 40),
        ({"jwt_algorithms": ["RS256"]}, lambda s: s.auth.algorithms == ["RS256"]),
        (
            {"namespaces": [{"name": "audit", "auth": "authenticated", "client_publish": False}]},
            lambda s: "audit" in [n.name for n in s.channels.namespaces],
        ),
    ],
)
def test_memory_conventions_override_tables(conventions: dict[str, Any], check: Any) -> None:
    """A convention in memory wins over the table, and the rationale says so."""
    spec = design(_req(), _memory(**conventions))
    assert check(spec)
    memory_rows = [d for d in spec.decisions if d.source == Source.MEMORY]
    assert memory_rows
    assert all("memory convention" in d.rationale for d in memory_rows)


def test_preferred_broker_nats_when_scaling_out() -> None:
    """Memory can switch the broker to NATS when more than one instance is needed."""
    spec = design(_req(durability="persistent"), _memory(preferred_broker="nats"))
    assert spec.scaling.strategy == ScalingStrategy.NATS
    assert spec.scaling.broker_url.startswith("nats://")


def test_known_issues_flow_into_spec() -> None:
    """Known issues from memory are carried for the review."""
    memory = MemoryEntry.model_validate(
        {
            "project": "chat-demo",
            "known_issues": [{"id": "KI-1", "summary": "proxy drops idle sockets at 30 s"}],
        }
    )
    spec = design(_req(), memory)
    assert spec.known_issues == ["KI-1: proxy drops idle sockets at 30 s"]


def test_design_is_deterministic() -> None:
    """Same input, same spec."""
    assert design(_req()).model_dump() == design(_req()).model_dump()


def test_preferred_broker_waits_for_scale_out() -> None:
    """A broker preference does not force a broker on a project one instance carries."""
    spec = design(_req(), _memory(preferred_broker="redis"))
    assert spec.scaling.strategy == ScalingStrategy.SINGLE
    row = spec.decision("scaling.strategy")
    assert row is not None and "applies once the project scales out" in row.rationale


def test_durable_namespaces_disconnect_slow_consumers() -> None:
    """Durable channels never drop: their backpressure class is disconnect, and they keep history."""
    spec = design(load_requirements(EXAMPLES / "notifications.yaml"))
    for ns in spec.channels.namespaces:
        if ns.durable:
            assert ns.backpressure.value == "disconnect", ns.name
            assert ns.history_size > 0


def test_every_memory_convention_is_in_the_one_table() -> None:
    """Each field of ``Conventions`` has exactly one row in ``CONVENTIONS`` (and no row is stale)."""
    from wsforge.architecture import CONVENTIONS
    from wsforge.memory import Conventions

    assert list(CONVENTIONS) == list(Conventions.model_fields)


# --- the application's front door (issue 22) ----------------------------------------------------


def _example(name: str, memory: MemoryEntry | None = None) -> Any:
    return design(load_requirements(EXAMPLES / f"{name}.yaml"), memory)


def _row(spec: Any, key: str) -> Any:
    row = spec.decision(key)
    assert row is not None, key
    return row


@pytest.mark.parametrize(
    ("example", "api", "publisher", "named"),
    [
        # server push, closed namespaces and a backend publisher, on Redis Streams
        ("notifications", True, "broker", ["server_push", "user, broadcast", "the backend"]),
        # the same on the in-memory broker: the API's HTTP client, and why
        ("public-ticker", True, "http", ["server_push", "feed", "the backend"]),
        # clients publish in rooms, but nobody may publish to user:<id> except the backend
        ("chat", True, "http", ["user"]),
        # devices publish from outside a session too
        ("iot-telemetry", True, "broker", ["devices"]),
    ],
)
def test_step_2_turns_the_api_on_and_says_why(
    example: str, api: bool, publisher: str, named: list[str]
) -> None:
    spec = _example(example)
    assert spec.server_api.enabled is api
    assert spec.server_api.host == "127.0.0.1" and spec.server_api.keys_env == "WS_API_KEYS"
    assert spec.publisher.kind.value == publisher
    row = _row(spec, "server_api")
    assert all(part in row.rationale for part in named), row.rationale
    assert "no server API" in row.alternatives
    listen = _row(spec, "server_api.listen")
    assert listen.value == "127.0.0.1:8766" and "0.0.0.0" in listen.alternatives
    pub = _row(spec, "publisher")
    if publisher == "http":
        assert "a separate process cannot reach it" in pub.rationale
        assert "broker" in pub.alternatives
    else:
        assert "no HTTP hop" in pub.rationale and "http" in pub.alternatives
    assert not spec.hooks.any_enabled()
    assert _row(spec, "hooks").value == "none"


def test_clients_that_publish_everything_get_no_api() -> None:
    """A game whose namespaces all take client publishes, answered as browser-only: no front door."""
    spec = design(_req(use_cases=["gaming"], message_patterns=["bidirectional"], publishers=["browser"]))
    assert spec.server_api.enabled is False
    assert spec.publisher.kind.value == "none"
    assert "server API" in _row(spec, "server_api").alternatives
    assert spec.decision("server_api.listen") is None
    assert _row(spec, "publishers").source == Source.REQUIREMENT


def test_a_backend_publisher_answer_alone_turns_the_api_on() -> None:
    spec = design(
        _req(use_cases=["gaming"], message_patterns=["bidirectional"], publishers=["browser", "backend"])
    )
    assert spec.server_api.enabled is True
    assert "the backend, from outside a WebSocket session" in _row(spec, "server_api").rationale


def test_memory_turns_the_api_off_and_says_what_the_table_chose() -> None:
    spec = design(_req(), _memory(server_api=False))
    assert spec.server_api.enabled is False and spec.publisher.kind.value == "none"
    row = _row(spec, "server_api")
    assert row.source == Source.MEMORY and "the table chose true" in row.rationale
    assert list(row.alternatives) == ["server API"]


def test_memory_api_port_moves_the_listener_not_the_host() -> None:
    spec = design(_req(), _memory(api_port=9100))
    assert (spec.server_api.host, spec.server_api.port) == ("127.0.0.1", 9100)
    assert _row(spec, "server_api.listen").source == Source.MEMORY


def test_memory_broker_publisher_on_the_memory_broker_becomes_http_and_says_why() -> None:
    spec = design(_req(), _memory(publisher="broker"))
    assert spec.scaling.strategy == ScalingStrategy.SINGLE
    assert spec.publisher.kind.value == "http"
    row = _row(spec, "publisher")
    assert row.source == Source.MEMORY
    assert "a separate process cannot reach it" in row.rationale and "api_client.py" in row.rationale


def test_memory_publisher_none_and_http_on_a_real_broker() -> None:
    assert _example("notifications", _memory(publisher="none")).publisher.kind.value == "none"
    spec = _example("notifications", _memory(publisher="http"))
    assert spec.publisher.kind.value == "http" and _row(spec, "publisher").source == Source.MEMORY


def test_hooks_from_memory_with_a_hook_namespace() -> None:
    hooks = ["connect", "subscribe", "publish", "disconnect"]
    namespace = {"name": "ticket", "auth": "hook", "history_size": 50}
    spec = design(_req(), _memory(hooks=hooks, namespaces=[namespace]))
    assert all(getattr(spec.hooks, name).enabled for name in hooks)
    assert spec.hooks.publish.timeout_ms == 250  # sub_100ms: a broker operation's budget
    row = _row(spec, "hooks")
    assert row.value == hooks and row.source == Source.MEMORY
    for phrase in ("fails closed", "fire-and-forget", "250 ms", "breaker", "ticket"):
        assert phrase in row.rationale, phrase
    assert "fail open" in row.alternatives
    relaxed = _example("notifications", _memory(hooks=["disconnect"]))
    assert relaxed.hooks.disconnect.enabled and not relaxed.hooks.connect.enabled
    assert relaxed.hooks.disconnect.timeout_ms == 1000


def test_a_hook_namespace_needs_the_subscribe_hook() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="subscribe"):
        _memory(namespaces=[{"name": "ticket", "auth": "hook"}], hooks=["connect"])


# -- workers and Kubernetes (issue 23) ----------------------------------------------------------


def test_a_scaled_out_plan_runs_one_worker_per_pod_on_kubernetes() -> None:
    spec = _example("notifications")
    assert (spec.scaling.instances, spec.scaling.workers) == (5, 1)
    assert spec.deploy.kubernetes is True
    assert spec.deploy.cpu_millicores == 1000
    assert spec.deploy.termination_grace_s > spec.deploy.prestop_s + spec.shutdown.grace_s
    assert spec.deploy.max_replicas >= spec.scaling.instances
    assert "per core" in _row(spec, "scaling.workers").rationale
    for key in ("deploy.kubernetes", "deploy.resources", "deploy.lifecycle", "deploy.autoscaling"):
        assert _row(spec, key).rationale


def test_one_instance_gets_no_manifests_unless_memory_asks() -> None:
    spec = _example("chat")
    assert (spec.scaling.instances, spec.scaling.workers, spec.deploy.kubernetes) == (1, 1, False)
    asked = _example("chat", _memory(kubernetes=True))
    assert asked.deploy.kubernetes is True and asked.deploy.max_replicas == 1
    row = _row(asked, "deploy.kubernetes")
    assert row.source == Source.MEMORY and "the table said" in row.rationale


def test_workers_per_instance_from_memory_regroup_the_planned_cores() -> None:
    spec = _example("notifications", _memory(workers_per_instance=2))
    assert (spec.scaling.instances, spec.scaling.workers, spec.scaling.cores) == (3, 2, 6)
    assert spec.deploy.cpu_millicores == 2000
    assert _row(spec, "scaling.workers").source == Source.MEMORY
    assert _row(spec, "scaling.instances").value == 3
    capped = _example("notifications", _memory(workers_per_instance=64))
    assert (capped.scaling.instances, capped.scaling.workers) == (1, 5)
    assert "capped" in _row(capped, "scaling.workers").rationale


def test_the_in_memory_broker_keeps_one_worker_and_says_why() -> None:
    spec = _example("chat", _memory(workers_per_instance=4))
    assert spec.scaling.workers == 1
    row = _row(spec, "scaling.workers")
    assert row.source == Source.MEMORY and "in-memory broker" in row.rationale


# --- deployment shape: standalone, or mounted in the team's app (issue 26) ---------------------


def test_without_an_existing_app_the_endpoint_is_standalone() -> None:
    spec = _example("chat")
    assert (spec.host.app.value, spec.host.mounted) == ("none", False)
    assert _row(spec, "deploy.shape").value == "standalone"


def test_a_load_the_asgi_stack_carries_is_mounted_in_the_existing_app() -> None:
    spec = design(_req(existing_app="fastapi"))
    assert (spec.host.app.value, spec.host.mounted, spec.host.session_auth) == ("fastapi", True, False)
    row = _row(spec, "deploy.shape")
    assert row.value == "mounted" and row.source == Source.REQUIREMENT
    assert "uvicorn" in row.rationale and "standalone" in row.alternatives
    assert spec.deploy.kubernetes is False  # the host app's own pods carry it


def test_django_mounts_with_session_auth_and_weighs_the_channel_layer() -> None:
    spec = design(_req(existing_app="django"))
    assert (spec.host.mounted, spec.host.session_auth) == (True, True)
    assert any("channel layer" in key for key in _row(spec, "deploy.shape").alternatives)
    assert _row(spec, "host.session_auth").value is True
    anonymous = design(_req(existing_app="django", auth="none"))
    assert anonymous.host.session_auth is False


def test_a_load_far_beyond_the_asgi_stack_runs_standalone_beside_the_app() -> None:
    spec = design(_req(existing_app="starlette", concurrent_connections=400_000, messages_per_second=20_000))
    assert spec.host.app.value == "starlette" and spec.host.mounted is False
    row = _row(spec, "deploy.shape")
    assert row.value == "standalone" and "beside the app" in row.rationale


def test_mounting_plans_instances_at_the_asgi_capacity() -> None:
    from wsforge.architecture import ASGI_CAPACITY, HEADROOM

    connections = 3 * int(ASGI_CAPACITY.connections * HEADROOM)
    spec = design(_req(existing_app="fastapi", concurrent_connections=connections))
    assert spec.host.mounted and spec.scaling.instances == 3


def test_memory_names_the_app_and_may_overrule_the_shape() -> None:
    spec = _example("chat", _memory(existing_app="django"))
    assert spec.host.app.value == "django" and spec.host.mounted
    assert _row(spec, "deploy.shape").source == Source.MEMORY
    beside = _example("chat", _memory(existing_app="fastapi", mount_in_app=False))
    assert beside.host.mounted is False
    row = _row(beside, "deploy.shape")
    assert row.value == "standalone" and "mount_in_app" in row.rationale
    answered = design(_req(existing_app="starlette"), _memory(existing_app="django"))
    assert answered.host.app.value == "starlette"  # an answer wins over memory


def test_device_fleets_at_high_rates_of_small_payloads_get_protobuf() -> None:
    """No browser, IoT/mobile clients, many small messages: Protocol Buffers leads, JSON stays second."""
    spec = design(
        _req(client_environments=["iot", "server"], messages_per_second=40_000, avg_payload_bytes=120)
    )
    assert spec.protocol.codecs == [Codec.PROTOBUF, Codec.JSON, Codec.MSGPACK]
    assert spec.protocol.subprotocols[0] == "wsforge.v1.protobuf"
    row = spec.decision("serialization")
    assert row is not None and "field numbers" in row.rationale
    # a slow fleet keeps MessagePack; any browser keeps JSON, and neither carries protobuf
    assert (
        Codec.PROTOBUF
        not in design(_req(client_environments=["iot"], messages_per_second=100)).protocol.codecs
    )
    assert (
        Codec.PROTOBUF not in design(_req(messages_per_second=40_000, avg_payload_bytes=120)).protocol.codecs
    )


def test_protobuf_asked_for_says_what_it_costs_browsers() -> None:
    spec = design(_req(serialization="protobuf"))
    assert spec.protocol.codecs[0] == Codec.PROTOBUF
    row = spec.decision("serialization")
    assert row is not None and row.source == Source.REQUIREMENT
    assert "protobufjs" in row.alternatives["json first"]
    assert design(_req(), _memory(serialization="protobuf")).protocol.codecs[0] == Codec.PROTOBUF


def test_preferred_broker_rabbitmq_when_scaling_out() -> None:
    spec = design(_req(durability="persistent"), _memory(preferred_broker="rabbitmq"))
    assert spec.scaling.strategy == ScalingStrategy.RABBITMQ
    assert spec.scaling.broker_url.startswith("amqp://")
    row = spec.decision("scaling.strategy")
    assert row is not None and row.source == Source.MEMORY and "stream" in row.rationale
    assert "memory prefers RabbitMQ" in row.alternatives["redis_streams"]


def test_protocol_layer_is_native_unless_asked_and_socketio_follows_the_heartbeat() -> None:
    native = design(_req())
    assert not native.socketio.enabled
    assert native.decision("protocol.layer").value == "native"  # type: ignore[union-attr]
    asked = design(_req(client_protocol="socketio"), _memory(client_protocol="native"))
    assert asked.socketio.enabled
    assert asked.decision("protocol.layer").source == Source.REQUIREMENT  # type: ignore[union-attr]
    assert asked.socketio.ping_interval_s == asked.heartbeat.interval_s
    remembered = design(_req(), _memory(client_protocol="socketio"))
    assert remembered.socketio.enabled
    assert remembered.decision("protocol.layer").source == Source.MEMORY  # type: ignore[union-attr]
