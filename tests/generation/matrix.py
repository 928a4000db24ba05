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
    Case("market-feed", "market-feed.yaml"),
    # The picows project, whose users want speed, once more on its compiled hot modules.
    Case("market-feed-mypyc", "market-feed.yaml", compiled=True),
    Case("notifications", "notifications.yaml"),
    Case("collaboration", "collaboration.yaml"),
    Case("iot-telemetry", "iot-telemetry.yaml"),
    Case("public-ticker", "public-ticker.yaml"),
    # option axes: codec, auth, presence, history, broker
    Case("chat-msgpack", "chat.yaml", conventions={"serialization": "msgpack"}),
    Case("chat-noauth", "chat.yaml", answer_changes={"auth": "none", "project_name": "chat-open"}),
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
                }
            ]
        },
        answer_changes={"durability": "ephemeral", "project_name": "chat-lean"},
    ),
    Case(
        "notifications-nats",
        "notifications.yaml",
        conventions={"preferred_broker": "nats"},
        answer_changes={"project_name": "notify-nats"},
    ),
]


def case_answers(case: Case) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load((EXAMPLES / case.answers).read_text())
    data.update(case.answer_changes)
    return dict(data)
