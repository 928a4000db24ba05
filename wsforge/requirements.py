"""Step 1: the real-time requirements, and how answers become them.

Answers come in layers (wizard > answers file > memory > defaults, like copier's ``AnswersMap``).
:func:`load_requirements` reads an answers file; :func:`build_requirements` validates merged
answers. Both turn pydantic's errors into :class:`RequirementsError` with the file, line and
dotted field path, so a typo costs one short message instead of a traceback.
"""

from __future__ import annotations

import difflib
import keyword
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._yaml import format_validation_error as format_validation_error
from ._yaml import read_mapping, validate
from .errors import RequirementsError

PROJECT_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


class UseCase(StrEnum):
    CHAT = "chat"
    LIVE_FEED = "live_feed"
    NOTIFICATIONS = "notifications"
    COLLABORATION = "collaboration"
    GAMING = "gaming"
    TRADING = "trading"
    IOT = "iot"
    CUSTOM = "custom"


class MessagePattern(StrEnum):
    SERVER_PUSH = "server_push"
    BIDIRECTIONAL = "bidirectional"
    REQUEST_RESPONSE = "request_response"


class LatencyClass(StrEnum):
    REALTIME = "sub_100ms"
    INTERACTIVE = "1_2s"


class ClientEnvironment(StrEnum):
    BROWSER = "browser"
    MOBILE = "mobile"
    IOT = "iot"
    SERVER = "server"


class PublisherRole(StrEnum):
    """Who puts messages into the system (the ``publishers`` answer)."""

    BROWSER = "browser"
    MOBILE = "mobile"
    BACKEND = "backend"
    """The application's own services: they reach the system through the server API or the broker."""
    DEVICE = "device"


PUSH_USE_CASES = frozenset({"notifications", "live_feed", "trading"})
"""Use cases whose messages come from the application, whatever the clients do."""

CLIENT_PUBLISHERS: dict[str, PublisherRole] = {
    "browser": PublisherRole.BROWSER,
    "mobile": PublisherRole.MOBILE,
    "iot": PublisherRole.DEVICE,
    "server": PublisherRole.BACKEND,
}
"""Which publisher a client environment is, when clients publish (bidirectional, request/response)."""


def derive_publishers(
    message_patterns: list[Any], use_cases: list[Any], client_environments: list[Any]
) -> list[PublisherRole]:
    """The ``publishers`` answer when none is given: what the other answers imply.

    Server push and the push use cases (notifications, live feeds, trading) mean the backend
    publishes; clients that send (bidirectional, request/response) publish from where they run;
    IoT projects also command their devices from the backend. Values may be enums or plain strings
    (the wizard derives from answers still in answer form).
    """
    plain = {str(getattr(v, "value", v)) for v in message_patterns}
    cases = {str(getattr(v, "value", v)) for v in use_cases}
    found: list[PublisherRole] = []
    if plain & {"bidirectional", "request_response"}:
        for env in client_environments:
            role = CLIENT_PUBLISHERS.get(str(getattr(env, "value", env)))
            if role is not None:
                found.append(role)
    if "server_push" in plain or cases & PUSH_USE_CASES or "iot" in cases:
        found.append(PublisherRole.BACKEND)
    ordered = [role for role in PublisherRole if role in found]
    return ordered or [PublisherRole.BACKEND]


class Durability(StrEnum):
    EPHEMERAL = "ephemeral"
    REPLAY = "replay"
    """Clients that reconnect get what they missed (bounded history)."""
    PERSISTENT = "persistent"
    """Messages survive server restarts (a durable broker)."""


class AuthMode(StrEnum):
    JWT = "jwt"
    COOKIE = "cookie"
    NONE = "none"


class Serialization(StrEnum):
    AUTO = "auto"
    JSON = "json"
    MSGPACK = "msgpack"
    PROTOBUF = "protobuf"


class ClientProtocol(StrEnum):
    """The protocol layer clients speak: wsforge's own envelope, or Socket.IO beside it."""

    AUTO = "auto"
    NATIVE = "native"
    SOCKETIO = "socketio"
    """Existing Socket.IO clients (any language), or clients behind proxies that need HTTP long-polling."""


class ExistingApp(StrEnum):
    """The web application the team already runs, which the WebSocket endpoint may live inside."""

    NONE = "none"
    FASTAPI = "fastapi"
    STARLETTE = "starlette"
    DJANGO = "django"


def package_name(project_name: str) -> str:
    """The importable package name for a project name (``chat-demo`` -> ``chat_demo``)."""
    return project_name.replace("-", "_")


class Requirements(BaseModel):
    """What the system must do, in the user's terms. Every field is a wizard question."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    project_name: str = Field(description="Project name; also the Python package name with '-' -> '_'.")
    use_cases: list[UseCase] = Field(min_length=1, description="What the WebSocket traffic is for.")
    message_patterns: list[MessagePattern] = Field(
        min_length=1, description="Who sends what: server push, bidirectional, request/response."
    )
    concurrent_connections: int = Field(ge=1, le=50_000_000, description="Peak concurrent connections.")
    messages_per_second: int = Field(
        ge=0, le=100_000_000, description="Peak messages per second published into the system."
    )
    avg_payload_bytes: int = Field(ge=1, le=16 * 1024 * 1024, description="Average message payload size.")
    latency_class: LatencyClass = Field(description="sub_100ms (trading, games, chat) or 1_2s.")
    client_environments: list[ClientEnvironment] = Field(min_length=1)
    publishers: list[PublisherRole] | None = Field(
        default=None,
        min_length=1,
        description="Who publishes messages: browsers, mobile apps, backend services, devices; "
        "derived from the message patterns, use cases and client environments when omitted.",
    )
    durability: Durability = Field(description="ephemeral, replay on reconnect, or survive restarts.")
    auth: AuthMode = Field(description="How clients prove who they are at the handshake.")
    allowed_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to connect (scheme://host[:port])."
    )
    serialization: Serialization = Field(
        default=Serialization.AUTO, description="Wire codec; auto lets step 2 decide."
    )
    avg_subscribers_per_channel: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Typical fan-out; derived from the use case when omitted.",
    )
    existing_app: ExistingApp = Field(
        default=ExistingApp.NONE,
        description="The web application the team already runs (none, fastapi, starlette, django); "
        "step 2 weighs mounting the endpoint inside it against a standalone server beside it.",
    )

    client_protocol: ClientProtocol = Field(
        default=ClientProtocol.AUTO,
        description="native (wsforge's envelope and clients), socketio (also serve Socket.IO v5 clients, "
        "with HTTP long-polling), or auto to let step 2 decide.",
    )

    @field_validator("project_name")
    @classmethod
    def _valid_project_name(cls, value: str) -> str:
        if not PROJECT_NAME_RE.match(value) or keyword.iskeyword(package_name(value)):
            raise ValueError(
                "must be lowercase letters and digits separated by '-' or '_', starting with a letter"
            )
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _valid_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*":
                continue
            if not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+$", origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return value

    @field_validator("use_cases", "message_patterns", "client_environments", "publishers")
    @classmethod
    def _unique(cls, value: list[Any] | None) -> list[Any] | None:
        return None if value is None else list(dict.fromkeys(value))

    @property
    def package(self) -> str:
        return package_name(self.project_name)

    @property
    def publisher_roles(self) -> list[PublisherRole]:
        """``publishers`` as answered, else derived from the other answers (:func:`derive_publishers`)."""
        if self.publishers:
            return list(self.publishers)
        return derive_publishers(self.message_patterns, self.use_cases, self.client_environments)

    @property
    def publishers_derived(self) -> bool:
        return not self.publishers


QUESTION_KEYS: tuple[str, ...] = tuple(Requirements.model_fields)


def check_known_keys(data: dict[str, Any], source: str, lines: dict[tuple[str, ...], int] | None) -> None:
    """Refuse keys that are not questions, naming the closest one (before "missing answer" noise).

    Raises:
        RequirementsError: ``file:line: key: unknown key; did you mean 'x'?`` for each.
    """
    problems = []
    for key in data:
        if key in QUESTION_KEYS:
            continue
        line = (lines or {}).get((str(key),))
        where = f"{source}:{line}" if line else source
        close = difflib.get_close_matches(str(key), QUESTION_KEYS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known keys: {', '.join(QUESTION_KEYS)})"
        problems.append(f"{where}: {key}: unknown key{hint}")
    if problems:
        raise RequirementsError("; ".join(problems))


def build_requirements(
    answers: dict[str, Any], *, source: str = "<answers>", lines: dict[tuple[str, ...], int] | None = None
) -> Requirements:
    """Validate merged answers into :class:`Requirements`.

    Raises:
        RequirementsError: naming the source, line (when known) and field of each problem.
    """
    return validate(Requirements, answers, source, lines, RequirementsError)


def read_answers(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Read a YAML or JSON answers file into a mapping plus the line of each key."""
    return read_mapping(
        path,
        RequirementsError,
        what="answers file",
        shape="answers file must be a mapping of question keys to answers",
        empty_ok=True,
    )


def load_requirements(path: Path) -> Requirements:
    """Read and validate an answers file that holds every answer."""
    data, lines = read_answers(path)
    return build_requirements(data, source=str(path), lines=lines)
