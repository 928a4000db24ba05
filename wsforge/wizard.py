"""Step 1, interactive: ask the requirements questions in a terminal.

The questions are data derived from the fields of :class:`~wsforge.requirements.Requirements`, so a
new field is a new question (and an unknown field type fails at import, not in front of a user).
Each answer is checked as it is typed with the *same* pydantic rules that
:func:`~wsforge.requirements.build_requirements` applies later (``validate_assignment`` on one
field), so a bad number or project name is refused at the prompt instead of after the last question.

Layering (wizard > answers file > memory > defaults): the caller merges the lower layers and passes
them as ``defaults``; each question *shows* its value from there (``[1000]`` after a text prompt, the
pointer or ticks on a choice) and Enter keeps it, while typing replaces it: the default is never
inserted as editable text, where typing ``5000`` would give ``10005000``. Each question's help is
printed above it, and after the last one the answers are summarised with a write / edit / cancel
choice, so nothing runs on an answer the user has not seen.
Only this module imports questionary; everything else is plain functions that tests call directly.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Literal, Protocol, Union, cast, get_args, get_origin

import questionary
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from .errors import InteractiveSessionRequired
from .requirements import (
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
    derive_publishers,
)

Kind = Literal["select", "checkbox", "text", "int"]

NO_TERMINAL_HINT = "use --answers FILE or --non-interactive"

PROMPTS: dict[str, str] = {
    "project_name": "Project name",
    "use_cases": "What is the real-time traffic for?",
    "message_patterns": "Who sends messages?",
    "concurrent_connections": "Peak concurrent connections",
    "messages_per_second": "Peak messages per second published (all channels)",
    "avg_payload_bytes": "Average message payload size in bytes",
    "latency_class": "End-to-end latency target",
    "client_environments": "Where do clients run?",
    "publishers": "Who publishes messages into the system?",
    "durability": "What happens to messages a client misses?",
    "auth": "How do clients authenticate at the handshake?",
    "allowed_origins": "Browser origins allowed to connect (comma-separated, blank for none)",
    "serialization": "Wire encoding",
    "avg_subscribers_per_channel": "Typical subscribers per channel (blank: derive from the use case)",
    "existing_app": "Which web application do you already run?",
    "client_protocol": "Which protocol do clients speak?",
}
"""The text shown for each question; a field missing here falls back to its description."""

HELP: dict[str, str] = {
    "project_name": "Names the project directory, the Python package ('-' becomes '_') and its memory file.",
    "use_cases": "Picks channel namespaces, presence and ordering defaults; pick every one that applies.",
    "message_patterns": "Whether clients only listen, also publish, or call the server and await a reply.",
    "concurrent_connections": "Sizes instances and the broker: beyond one instance, a broker fans messages out.",
    "messages_per_second": "Published messages per second across all channels, before fan-out to subscribers.",
    "avg_payload_bytes": "Drives the codec choice, the frame size limit and the bandwidth estimate.",
    "latency_class": "How long a message may take from publisher to subscribers.",
    "client_environments": "Decides the generated clients and whether browser origins must be checked.",
    "publishers": "A backend or devices publishing turn on the server API (HTTP, API keys) and a publisher "
    "library; the ticks are derived from your earlier answers.",
    "durability": "Live only, replay from bounded history after a reconnect, or history that survives restarts.",
    "auth": "How the server knows who connects, checked before the WebSocket upgrade completes.",
    "allowed_origins": "Browsers send an Origin header; others are refused (cross-site WebSocket hijacking).",
    "serialization": "JSON is readable in dev tools; MessagePack is smaller and faster for binary-heavy data; "
    "Protocol Buffers is smallest, with typed messages generated for every client.",
    "avg_subscribers_per_channel": "Fan-out per published message; leave blank to use the use case's typical value.",
    "existing_app": "The endpoint can be mounted inside it (one deployment, its users and sessions) or run "
    "as its own faster server beside it; the architecture step weighs both.",
    "client_protocol": "Socket.IO serves the socket.io-client libraries of every language and HTTP long-polling "
    "behind proxies that block WebSocket; the native protocol is leaner and has generated clients.",
}
"""Why each question matters, printed above it (a field missing here shows its description)."""

CLEAR = "-"
"""Typed at a text prompt whose blank answer keeps a default: answer "none" (empty list / no value)."""

CONFIRM_PROMPT = "Write the project with these answers?"
CONFIRM_WRITE, CONFIRM_EDIT, CONFIRM_CANCEL = "write", "edit", "cancel"
EDIT_PROMPT = "Which answer do you want to change?"

HINTS: dict[str, str] = {
    "project_name": "(lowercase, e.g. chat-demo)",
    "concurrent_connections": "(whole number; 10k = 10000)",
    "messages_per_second": "(whole number; 0 if clients only receive)",
    "avg_payload_bytes": "(whole number, 1 .. 16777216)",
    "allowed_origins": "(e.g. https://app.example.com)",
}
"""Short format hints shown after text and number prompts."""

LABELS: dict[tuple[type[Enum], str], str] = {
    (type(member), member.value): title
    for member, title in (
        (UseCase.CHAT, "chat: rooms, direct messages, typing, presence"),
        (UseCase.LIVE_FEED, "live feed: prices, scores, dashboards"),
        (UseCase.NOTIFICATIONS, "notifications: per-user alerts"),
        (UseCase.COLLABORATION, "collaboration: shared documents, cursors"),
        (UseCase.GAMING, "gaming: match state, low latency"),
        (UseCase.TRADING, "trading: order books, ticks, strict ordering"),
        (UseCase.IOT, "IoT: device telemetry and commands"),
        (UseCase.CUSTOM, "custom"),
        (MessagePattern.SERVER_PUSH, "server push: the server sends, clients listen"),
        (MessagePattern.BIDIRECTIONAL, "bidirectional: clients publish too"),
        (MessagePattern.REQUEST_RESPONSE, "request/response: clients call and await answers"),
        (LatencyClass.REALTIME, "under 100 ms (trading, games, chat)"),
        (LatencyClass.INTERACTIVE, "1-2 s is fine (notifications, dashboards)"),
        (ClientEnvironment.BROWSER, "browser"),
        (ClientEnvironment.MOBILE, "mobile app"),
        (ClientEnvironment.IOT, "IoT device"),
        (ClientEnvironment.SERVER, "server / backend service"),
        (PublisherRole.BROWSER, "browsers (the web app's users)"),
        (PublisherRole.MOBILE, "mobile apps"),
        (PublisherRole.BACKEND, "backend services (your application's servers, jobs, webhooks)"),
        (PublisherRole.DEVICE, "devices (IoT)"),
        (Durability.EPHEMERAL, "dropped: only live messages matter"),
        (Durability.REPLAY, "replayed on reconnect (bounded history)"),
        (Durability.PERSISTENT, "kept across server restarts (durable broker)"),
        (AuthMode.JWT, "JWT (header, subprotocol or query token)"),
        (AuthMode.COOKIE, "session cookie holding a JWT"),
        (AuthMode.NONE, "none: anonymous, public channels only"),
        (Serialization.AUTO, "auto: let the architecture step decide"),
        (Serialization.JSON, "JSON (text frames)"),
        (Serialization.MSGPACK, "MessagePack (binary frames)"),
        (Serialization.PROTOBUF, "Protocol Buffers (binary frames, typed messages from a .proto)"),
        (ExistingApp.NONE, "none: a standalone real-time server"),
        (ExistingApp.FASTAPI, "FastAPI"),
        (ExistingApp.STARLETTE, "Starlette"),
        (ExistingApp.DJANGO, "Django"),
        (ClientProtocol.AUTO, "auto: let the architecture step decide"),
        (ClientProtocol.NATIVE, "native: wsforge's protocol and its generated Python and JavaScript clients"),
        (ClientProtocol.SOCKETIO, "Socket.IO: also serve socket.io-client (any language), with long-polling"),
    )
}
"""Choice titles by ``(enum class, value)``: str enums with equal values (``UseCase.IOT`` and
``ClientEnvironment.IOT``) compare equal, so the members themselves cannot be the keys. The stored
answer is always the enum value."""

SUGGESTED: dict[str, Any] = {
    "message_patterns": ["bidirectional"],
    "concurrent_connections": 1000,
    "messages_per_second": 100,
    "avg_payload_bytes": 512,
    "latency_class": "sub_100ms",
    "client_environments": ["browser"],
    "durability": "ephemeral",
    "auth": "jwt",
}
"""Pre-filled answers for required fields when no lower layer has one (``use_cases`` stays a choice)."""

ONLY_IF: dict[str, tuple[str, str]] = {
    "allowed_origins": ("client_environments", ClientEnvironment.BROWSER.value),
}
"""``key -> (other key, value)``: ask ``key`` only when that value is among the other answer."""

DERIVED: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "publishers": lambda answers: [
        role.value
        for role in derive_publishers(
            list(answers.get("message_patterns") or []),
            list(answers.get("use_cases") or []),
            list(answers.get("client_environments") or []),
        )
    ],
}
"""``key -> f(answers so far)``: the default of an optional question that no lower layer answered,
derived from the earlier answers (shown pre-ticked, so the user sees and confirms what step 2 would
otherwise assume)."""

_INT_RE = re.compile(r"^(\d+(?:[_,]\d{3})*)\s*([kKmM]?)$")
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000}


class Question(BaseModel):
    """One wizard question, as data. Answers are in *answer form*: what an answers file holds."""

    model_config = ConfigDict(frozen=True)

    key: str
    prompt: str
    kind: Kind
    choices: tuple[tuple[str, str], ...] = ()
    """``(value, title)`` pairs for select and checkbox questions."""
    default: Any = None
    """Answer-form default when no lower layer has one (None: no default)."""
    help: str = ""
    hint: str = ""
    optional: bool = False
    """A blank answer means None (numbers) or an empty list (lists)."""
    many: bool = False
    """A text answer holding a comma- or space-separated list."""
    only_if: tuple[str, str] | None = None

    @property
    def clearable(self) -> bool:
        """Whether "no answer" is a valid answer (an optional number, a list that may be empty)."""
        return self.optional or self.many

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(value for value, _ in self.choices)

    def parse(self, raw: Any) -> Any:
        """Turn what the prompt returned into an answer-form value.

        Raises:
            ValueError: the text is not a value of this question's type (message for the user).
        """
        if self.kind == "checkbox":
            return [str(v) for v in (raw or [])]
        if self.kind == "select":
            return str(raw)
        text = "" if raw is None else str(raw).strip()
        if self.kind == "int":
            if not text and self.optional:
                return None
            match = _INT_RE.match(text)
            if not match:
                raise ValueError("enter a whole number, like 5000 or 5k")
            digits, suffix = match.groups()
            return int(digits.replace("_", "").replace(",", "")) * _MULTIPLIERS[suffix.lower()]
        if self.many:
            return [part for part in re.split(r"[,\s]+", text) if part]
        return text

    def check(self, raw: Any) -> str | None:
        """None when ``raw`` is an acceptable answer, else a one-line reason."""
        try:
            value = self.parse(raw)
        except ValueError as exc:
            return str(exc)
        return check_value(self.key, value)

    def validator(self) -> Callable[[Any], bool | str]:
        """The check in questionary's shape: True, or the message to show under the prompt."""

        def validate(raw: Any) -> bool | str:
            problem = self.check(raw)
            return True if problem is None else problem

        return validate

    def prefill(self, layered: Any) -> Any:
        """The prompt's initial value: ``layered`` (from lower layers) when usable, else ``default``.

        A lower-layer value this question cannot show (an unknown choice, a wrong type) is ignored
        rather than crashing the prompt; the final validation still reports bad answers files.
        """
        for candidate in (layered, self.default):
            shown = self._to_prompt(candidate)
            if shown is not None:
                return shown
        return [] if self.kind == "checkbox" else "" if self.kind in ("text", "int") else None

    def _to_prompt(self, value: Any) -> Any:
        if value is None:
            return None
        if self.kind == "select":
            value = _plain(value)
            return value if value in self.values else None
        if self.kind == "checkbox":
            if not isinstance(value, list | tuple):
                return None
            picked = [_plain(v) for v in value]
            return [v for v in self.values if v in picked]
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return None
            return str(value)
        if self.many:
            if not isinstance(value, list | tuple):
                return None
            return ", ".join(str(v) for v in value)
        return value if isinstance(value, str) else None

    def applies(self, answers: Mapping[str, Any]) -> bool:
        """Whether to ask, given the answers so far (over the lower layers)."""
        if self.only_if is None:
            return True
        other, wanted = self.only_if
        current = answers.get(other) or []
        return wanted in [_plain(v) for v in current]


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _plain_answer(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return _plain(value)


def check_value(key: str, value: Any) -> str | None:
    """Validate one answer-form value with the :class:`Requirements` rules for ``key``."""
    try:
        # An unvalidated instance: validate_assignment then runs exactly one field's rules.
        blank = cast(Any, Requirements).model_construct()
        Requirements.__pydantic_validator__.validate_assignment(blank, key, value)
    except ValidationError as exc:
        return _describe(exc)
    return None


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']:,}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']:,}"
    if kind == "too_short":
        return "pick at least one (space toggles a choice)"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _question_for(key: str, field: FieldInfo) -> Question:
    annotation = field.annotation
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    many = get_origin(annotation) is list
    inner = get_args(annotation)[0] if many else annotation
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    common: dict[str, Any] = {
        "key": key,
        "prompt": PROMPTS.get(key, field.description or key),
        "help": HELP.get(key, field.description or ""),
        "hint": HINTS.get(key, ""),
        "optional": optional,
        "only_if": ONLY_IF.get(key),
        "default": SUGGESTED.get(key, _plain(default) if not isinstance(default, list) else default),
    }
    if isinstance(inner, type) and issubclass(inner, Enum):
        choices = tuple((m.value, LABELS.get((inner, m.value), m.value)) for m in inner)
        return Question(kind="checkbox" if many else "select", choices=choices, many=many, **common)
    if inner is int and not many:
        return Question(kind="int", **common)
    if inner is str:
        return Question(kind="text", many=many, **common)
    raise TypeError(f"wizard: no question kind for field {key!r} of type {field.annotation!r}")


def build_questions() -> tuple[Question, ...]:
    """One question per :class:`Requirements` field, in the model's field order."""
    return tuple(_question_for(key, field) for key, field in Requirements.model_fields.items())


QUESTIONS: tuple[Question, ...] = build_questions()


class _Prompt(Protocol):
    def unsafe_ask(self) -> Any: ...


class Asker(Protocol):
    """What :func:`ask_requirements` needs from questionary (tests pass a scripted stand-in)."""

    def select(self, message: str, *args: Any, **kwargs: Any) -> _Prompt: ...

    def checkbox(self, message: str, *args: Any, **kwargs: Any) -> _Prompt: ...

    def text(self, message: str, *args: Any, **kwargs: Any) -> _Prompt: ...


def _has_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _prompt_for(question: Question, initial: Any, ask: Asker) -> _Prompt:
    if question.kind == "select":
        choices = [questionary.Choice(title, value=value) for value, title in question.choices]
        return ask.select(question.prompt, choices=choices, default=initial)
    if question.kind == "checkbox":
        choices = [
            questionary.Choice(title, value=value, checked=value in initial)
            for value, title in question.choices
        ]
        return ask.checkbox(question.prompt, choices=choices, validate=question.validator())
    # The default is shown after the prompt, never inserted as editable text: with it inserted,
    # typing 5000 at "[1000]" gave 10005000. Blank keeps the default; CLEAR empties an optional one.
    keep = initial not in ("", None)
    check = question.validator()

    def validate(raw: Any) -> bool | str:
        text = "" if raw is None else str(raw).strip()
        if keep and not text:
            return check(initial)  # a lower layer's value is checked like a typed one
        if keep and text == CLEAR and question.clearable:
            return True
        return check(raw)

    shown = ""
    if keep:
        shown = f"[{initial}; '{CLEAR}' for none]" if question.clearable else f"[{initial}]"
    instruction = " ".join(part for part in (question.hint, shown) if part)
    return ask.text(question.prompt, default="", validate=validate, instruction=instruction or None)


def _typed_or_default(question: Question, raw: Any, initial: Any) -> Any:
    """What a text prompt's answer means: blank keeps ``initial``; CLEAR empties a clearable one."""
    if question.kind not in ("text", "int"):
        return raw
    text = "" if raw is None else str(raw).strip()
    if initial not in ("", None):
        if not text:
            return initial
        if text == CLEAR and question.clearable:
            return ""
    return raw


def ask_requirements(
    defaults: Mapping[str, Any],
    *,
    ask: Asker | types.ModuleType = questionary,
    keys: Sequence[str] | None = None,
    confirm: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Ask every requirements question (or only ``keys``); return ``defaults`` overlaid with the answers.

    ``defaults`` is the merge of the lower layers (answers file > memory > defaults); each question
    shows its value there as the default, and the result is the complete merge (wizard on top), in
    answer form, ready for :func:`~wsforge.requirements.build_requirements`. A question whose
    condition does not hold (origins without browser clients) is not asked, so its lower-layer
    value stands. With ``confirm``, the answers are then summarised and the user picks write, edit
    (re-ask one question, then summarise again) or cancel. ``say`` prints help and the summary
    (default: standard error, where narration goes).

    Raises:
        KeyboardInterrupt: the user pressed Ctrl-C or chose cancel; the caller writes nothing, exits 130.
        InteractiveSessionRequired: there is no terminal, or input ended (Ctrl-D, closed stdin).
    """
    if ask is questionary and not _has_terminal():
        raise InteractiveSessionRequired(
            f"no terminal to ask the requirements questions on; {NO_TERMINAL_HINT}"
        )
    asker: Asker = ask
    show = say or _say
    answers: dict[str, Any] = {key: _plain_answer(value) for key, value in defaults.items()}
    asked: list[Question] = []
    for question in QUESTIONS:
        if keys is not None and question.key not in keys:
            continue
        if not question.applies(answers):
            continue
        answers[question.key] = _ask_one(question, _layered(question, answers), asker, show)
        asked.append(question)
    while confirm and asked:
        show(summarise(answers, asked))
        choice = _unsafe(
            asker.select(
                CONFIRM_PROMPT,
                choices=[
                    questionary.Choice("yes, write the project", value=CONFIRM_WRITE),
                    questionary.Choice("edit an answer", value=CONFIRM_EDIT),
                    questionary.Choice("cancel (nothing is written)", value=CONFIRM_CANCEL),
                ],
                default=CONFIRM_WRITE,
            ),
            "the confirmation",
        )
        if choice == CONFIRM_WRITE:
            break
        if choice != CONFIRM_EDIT:
            raise KeyboardInterrupt
        key = _unsafe(
            asker.select(
                EDIT_PROMPT,
                choices=[
                    questionary.Choice(f"{q.prompt}: {_display(answers.get(q.key))}", value=q.key)
                    for q in asked
                ],
            ),
            "the edit choice",
        )
        question = next(q for q in QUESTIONS if q.key == key)
        answers[key] = _ask_one(question, _layered(question, answers), asker, show)
        # An edit can make a skipped question relevant (browser clients -> origins): ask it now.
        for later in QUESTIONS:
            if later not in asked and (keys is None or later.key in keys) and later.applies(answers):
                answers[later.key] = _ask_one(later, _layered(later, answers), asker, show)
                asked.append(later)
        asked.sort(key=QUESTIONS.index)
    return answers


def _layered(question: Question, answers: Mapping[str, Any]) -> Any:
    """The value a question starts from: the lower layers', else one derived from earlier answers."""
    value = answers.get(question.key)
    derive = DERIVED.get(question.key)
    if value is None and derive is not None:
        return derive(answers)
    return value


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _unsafe(prompt: _Prompt, what: str) -> Any:
    try:
        return prompt.unsafe_ask()
    except EOFError as exc:
        raise InteractiveSessionRequired(
            f"input ended before {what} was answered; {NO_TERMINAL_HINT}"
        ) from exc


def _ask_one(question: Question, layered: Any, ask: Asker, say: Callable[[str], None]) -> Any:
    if question.help:
        say(f"  {question.help}")
    initial = question.prefill(layered)
    raw = _unsafe(_prompt_for(question, initial, ask), repr(question.key))
    return question.parse(_typed_or_default(question, raw, initial))


def _display(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def summarise(answers: Mapping[str, Any], asked: Sequence[Question]) -> str:
    """The answers as the user will confirm them: one ``prompt: value`` line per question asked."""
    width = max(len(q.prompt) for q in asked)
    rows = [f"  {q.prompt:<{width}}  {_display(answers.get(q.key))}" for q in asked]
    return "\nYour answers:\n" + "\n".join(rows) + "\n"
