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
