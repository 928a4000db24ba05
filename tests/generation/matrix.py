"""The render-matrix cases: examples plus option combinations that memory conventions select."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..conftest import EXAMPLES


@dataclass(frozen=True)
class Case:
    name: str
    answers: str
    conventions: dict[str, Any] = field(default_factory=dict)
    answer_changes: dict[str, Any] = field(default_factory=dict)
    compiled: bool = False
    """Run the project's tests on its mypyc build (``scripts/compile.py``) instead of pure Python."""


CASES: list[Case] = [
    Case("chat", "chat.yaml"),
    # Protocol Buffers asked for by memory, with browser clients (protobufjs in Chromium) on picows;
    # and Socket.IO clients on the picows face over Redis pub/sub
    Case(
        "market-feed",
        "market-feed.yaml",
        conventions={"serialization": "protobuf", "client_protocol": "socketio"},
    ),
    # The picows project, whose users want speed, once more on its compiled hot modules.
    Case("market-feed-mypyc", "market-feed.yaml", compiled=True),
    # On NATS with its Kubernetes manifests (notify-nats, below, is mounted in Django instead).
    # ... and Socket.IO clients over NATS (mobile apps with their socket.io-client libraries)
    Case(
        "notifications",
        "notifications.yaml",
        conventions={"preferred_broker": "nats", "client_protocol": "socketio"},
    ),
    # Mounted in the team's FastAPI app (issue 26): the ASGI target behind uvicorn, on Redis Streams;
    # Socket.IO clients by memory, served by the mounted app too (WebSocket and long-polling)
    Case(
        "collab-fastapi",
        "collaboration.yaml",
        # 12,000 connections: two uvicorn processes' worth, so the case scales out over a broker
        conventions={"client_protocol": "socketio"},
        answer_changes={
            "existing_app": "fastapi",
            "project_name": "collab-fastapi",
            "concurrent_connections": 12000,
        },
    ),
    # Protocol Buffers by step 2's table (a device fleet of small messages), on RabbitMQ by memory,
    # with its Kubernetes manifests: the broker contract and chaos suites run on a real RabbitMQ;
    # and Socket.IO clients (devices with a socket.io-client library) over RabbitMQ
    Case(
        "iot-telemetry",
        "iot-telemetry.yaml",
        conventions={"preferred_broker": "rabbitmq", "client_protocol": "socketio"},
    ),
    Case("public-ticker", "public-ticker.yaml"),
    # option axes: codec, auth, presence, history, broker
    # msgpack, and the server API turned off by memory although step 2's table turns it on for chat
    # (user:* is closed to clients); chat-noauth has no API by the table (only client publishes).
    Case(
        "chat-msgpack",
        "chat.yaml",
        conventions={"serialization": "msgpack", "server_api": False, "client_protocol": "socketio"},
    ),
    Case("chat-noauth", "chat.yaml", answer_changes={"auth": "none", "project_name": "chat-open"}),
    # ... and every event hook on, with a namespace whose subscribers the subscribe hook decides
    Case(
        "chat-nopresence-nohistory",
        "chat.yaml",
        conventions={
            "namespaces": [
                {
                    "name": "room",
                    "auth": "authenticated",
                    "presence": False,
                    "history_size": 0,
                    "backpressure": "drop_oldest",
                },
                {
                    "name": "support",
                    "auth": "hook",
                    "client_publish": True,
                    "history_size": 0,
                    "backpressure": "drop_oldest",
                    "description": "support threads; the application's subscribe hook decides who may read each",
                },
            ],
            "hooks": ["connect", "subscribe", "publish", "disconnect"],
            # one pod on the in-memory broker, asked for by memory: manifests with no autoscaler
            "kubernetes": True,
        },
        answer_changes={"durability": "ephemeral", "project_name": "chat-lean"},
    ),
    Case(
        "notifications-nats",
        "notifications.yaml",
        # the publisher library over NATS, the API on a port from memory, two workers per pod; and
        # mounted in the team's Django app although step 2 would run it beside (issue 26)
        conventions={
            "preferred_broker": "nats",
            "api_port": 8876,
            "workers_per_instance": 2,
            "existing_app": "django",
            "mount_in_app": True,
        },
        answer_changes={"project_name": "notify-nats"},
    ),
]


def case_answers(case: Case) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load((EXAMPLES / case.answers).read_text())
    data.update(case.answer_changes)
    return dict(data)
