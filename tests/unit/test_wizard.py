"""The wizard's questions, validators and answer flow, without a terminal.

The terminal itself is exercised in tests/cli/test_wizard_pty.py; here a scripted stand-in for
questionary (``ScriptedAsk``) returns canned answers through the same ``ask=`` seam the CLI uses.
"""

from __future__ import annotations

from typing import Any

import pytest
import questionary

from wsforge.errors import InteractiveSessionRequired
from wsforge.requirements import Requirements, build_requirements
from wsforge.wizard import (
    CONFIRM_CANCEL,
    CONFIRM_EDIT,
    CONFIRM_PROMPT,
    CONFIRM_WRITE,
    EDIT_PROMPT,
    QUESTIONS,
    Question,
    ask_requirements,
    summarise,
)

BY_KEY = {q.key: q for q in QUESTIONS}


def test_one_question_per_requirements_field_in_model_order() -> None:
    assert [q.key for q in QUESTIONS] == list(Requirements.model_fields)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("project_name", "text"),
        ("use_cases", "checkbox"),
        ("message_patterns", "checkbox"),
        ("client_environments", "checkbox"),
        ("publishers", "checkbox"),
        ("concurrent_connections", "int"),
        ("avg_subscribers_per_channel", "int"),
        ("latency_class", "select"),
        ("durability", "select"),
        ("auth", "select"),
        ("serialization", "select"),
        ("allowed_origins", "text"),
    ],
)
def test_kind_follows_the_field_type(key: str, kind: str) -> None:
    assert BY_KEY[key].kind == kind


def test_choices_are_the_enum_values() -> None:
    from wsforge.requirements import Durability, UseCase

    assert BY_KEY["use_cases"].values == tuple(u.value for u in UseCase)
    assert BY_KEY["durability"].values == tuple(d.value for d in Durability)
    # Every choice has a human title, not just the raw value.
    for question in QUESTIONS:
        titles = [title for _, title in question.choices]
        assert all(titles), question.key
        assert len(set(titles)) == len(titles), question.key


def test_equal_values_of_different_enums_keep_their_own_titles() -> None:
    # UseCase.IOT == ClientEnvironment.IOT (both are the str "iot"); each keeps its own title.
    assert dict(BY_KEY["use_cases"].choices)["iot"] != dict(BY_KEY["client_environments"].choices)["iot"]


def test_every_question_has_prompt_and_help() -> None:
    for question in QUESTIONS:
        assert question.prompt
        if question.key in Requirements.model_fields and Requirements.model_fields[question.key].description:
            assert question.help


def test_suggested_defaults_are_themselves_valid() -> None:
    for question in QUESTIONS:
        if question.default is None:
            continue
        shown = question.prefill(None)
        assert question.check(shown) is None, (question.key, shown)


# --- validators, as typed ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["chat-demo", "chat_demo", "a1", "feed2-eu"])
def test_project_name_accepts_package_names(text: str) -> None:
    assert BY_KEY["project_name"].check(text) is None


@pytest.mark.parametrize("text", ["", "Chat", "1chat", "chat demo", "chat--demo", "class", "-x", "chat.demo"])
def test_project_name_rejects_non_package_names(text: str) -> None:
    problem = BY_KEY["project_name"].check(text)
    assert problem is not None
    assert "lowercase" in problem


@pytest.mark.parametrize(
    ("text", "value"),
    [("5000", 5000), (" 42 ", 42), ("10k", 10_000), ("2M", 2_000_000), ("10_000", 10_000), ("1,000", 1000)],
)
def test_numbers_parse_as_integers(text: str, value: int) -> None:
    question = BY_KEY["concurrent_connections"]
    assert question.check(text) is None
    assert question.parse(text) == value
    assert isinstance(question.parse(text), int)


@pytest.mark.parametrize("text", ["", "abc", "1.5", "-3", "1,5", "10 000", "k", "1e6", "0x10"])
def test_numbers_reject_non_integers(text: str) -> None:
    assert BY_KEY["concurrent_connections"].check(text) == "enter a whole number, like 5000 or 5k"


def test_numbers_are_range_checked_with_the_model_bounds() -> None:
    connections = BY_KEY["concurrent_connections"]
    assert connections.check("0") == "must be at least 1"
    assert connections.check("50000001") == "must be at most 50,000,000"
    assert connections.check("50M") is None
    assert BY_KEY["messages_per_second"].check("0") is None
    assert BY_KEY["avg_payload_bytes"].check("16777217") == "must be at most 16,777,216"


def test_optional_number_accepts_blank_as_none() -> None:
    question = BY_KEY["avg_subscribers_per_channel"]
    assert question.optional
    assert question.check("") is None
    assert question.parse("  ") is None
    assert question.check("0") == "must be at least 1"


def test_origins_are_validated_one_by_one() -> None:
    question = BY_KEY["allowed_origins"]
    assert question.parse("https://a.example.com, http://localhost:8000") == [
        "https://a.example.com",
        "http://localhost:8000",
    ]
    assert question.check("https://a.example.com http://localhost:8000") is None
    assert question.check("") is None
    assert question.parse("") == []
    assert question.check("*") is None
    problem = question.check("https://ok.example.com, ftp://files.example.com")
    assert problem is not None and "ftp://files.example.com" in problem
    assert question.check("https://app.example.com/path") is not None


def test_checkbox_needs_at_least_one_choice() -> None:
    question = BY_KEY["use_cases"]
    assert question.check([]) == "pick at least one (space toggles a choice)"
    assert question.check(["chat", "trading"]) is None
    assert question.check(["nonsense"]) is not None


def test_validator_has_questionarys_shape() -> None:
    validate = BY_KEY["concurrent_connections"].validator()
    assert validate("10") is True
    assert validate("x") == "enter a whole number, like 5000 or 5k"


# --- prefill from the lower layers ---------------------------------------------------------------


def test_prefill_prefers_the_lower_layers_over_the_suggestion() -> None:
    assert BY_KEY["concurrent_connections"].prefill(250) == "250"
    assert BY_KEY["concurrent_connections"].prefill(None) == "1000"
    assert BY_KEY["auth"].prefill("cookie") == "cookie"
    assert BY_KEY["client_environments"].prefill(["server", "browser"]) == ["browser", "server"]
    assert BY_KEY["allowed_origins"].prefill(["https://a.example.com", "https://b.example.com"]) == (
        "https://a.example.com, https://b.example.com"
    )


def test_prefill_ignores_values_the_prompt_cannot_show() -> None:
    assert BY_KEY["auth"].prefill("kerberos") == "jwt"
    assert BY_KEY["concurrent_connections"].prefill("lots") == "1000"
    assert BY_KEY["concurrent_connections"].prefill(True) == "1000"
    assert BY_KEY["use_cases"].prefill("chat") == []
    assert BY_KEY["project_name"].prefill(None) == ""


def test_prefill_accepts_enum_members() -> None:
    from wsforge.requirements import AuthMode, UseCase

    assert BY_KEY["auth"].prefill(AuthMode.NONE) == "none"
    assert BY_KEY["use_cases"].prefill([UseCase.IOT]) == ["iot"]


# --- the flow, through the ask= seam -------------------------------------------------------------


class _Answer:
    def __init__(self, value: Any) -> None:
        self.value = value

    def unsafe_ask(self) -> Any:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


class ScriptedAsk:
    """Stands in for the questionary module: records each prompt and answers from a script.

    A script entry of ``...`` presses Enter: a choice prompt keeps its selection, a text prompt
    answers blank (which keeps the shown default). The confirmation and edit prompts answer from
    the lists ``script["_confirm"]`` (default: write) and ``script["_edit"]``, in order.
    """

    def __init__(self, script: dict[str, Any]) -> None:
        self.script = dict(script)
        self.asked: list[tuple[str, str, dict[str, Any]]] = []
        self.confirms: list[Any] = list(self.script.pop("_confirm", []))
        self.edits: list[Any] = list(self.script.pop("_edit", []))

    def _key(self, message: str) -> str:
        return next(q.key for q in QUESTIONS if q.prompt == message)

    def _answer(self, kind: str, message: str, kwargs: dict[str, Any]) -> _Answer:
        if message == CONFIRM_PROMPT:
            self.asked.append((kind, "_confirm", kwargs))
            return _Answer(self.confirms.pop(0) if self.confirms else CONFIRM_WRITE)
        if message == EDIT_PROMPT:
            self.asked.append((kind, "_edit", kwargs))
            return _Answer(self.edits.pop(0))
        key = self._key(message)
        self.asked.append((kind, key, kwargs))
        value = self.script[key]
        if isinstance(value, tuple):  # one answer per time the question is asked (edits)
            value, self.script[key] = value[0], value[1:]
        if value is ...:
            if kind == "checkbox":
                value = [c.value for c in kwargs["choices"] if c.checked]
            else:
                value = kwargs["default"]
        validate = kwargs.get("validate")
        if validate is not None and not isinstance(value, BaseException):
            assert validate(value) is True, (key, value, validate(value))
        return _Answer(value)

    def select(self, message: str, **kwargs: Any) -> _Answer:
        return self._answer("select", message, kwargs)

    def checkbox(self, message: str, **kwargs: Any) -> _Answer:
        return self._answer("checkbox", message, kwargs)

    def text(self, message: str, **kwargs: Any) -> _Answer:
        return self._answer("text", message, kwargs)


FULL_SCRIPT: dict[str, Any] = {
    "project_name": "chat-demo",
    "use_cases": ["chat"],
    "message_patterns": ...,
    "concurrent_connections": "20k",
    "messages_per_second": "500",
    "avg_payload_bytes": ...,
    "latency_class": ...,
    "client_environments": ["browser", "mobile"],
    "publishers": ...,
    "durability": "replay",
    "auth": ...,
    "allowed_origins": "https://chat.example.com",
    "serialization": ...,
    "avg_subscribers_per_channel": "",
    "existing_app": ...,
    "client_protocol": ...,
}


def test_answers_validate_into_requirements() -> None:
    ask = ScriptedAsk(FULL_SCRIPT)
    answers = ask_requirements({}, ask=ask)
    assert answers["concurrent_connections"] == 20_000
    assert answers["avg_subscribers_per_channel"] is None
    assert answers["allowed_origins"] == ["https://chat.example.com"]
    assert answers["message_patterns"] == ["bidirectional"]
    requirements = build_requirements(answers)
    assert requirements.project_name == "chat-demo"
    assert requirements.durability.value == "replay"
    kinds = [kind for kind, key, _ in ask.asked if not key.startswith("_")]
    assert kinds == [q.kind if q.kind != "int" else "text" for q in QUESTIONS]
    assert [key for _, key, _ in ask.asked][-1] == "_confirm"


def test_lower_layers_prefill_every_prompt() -> None:
    layered = {
        "project_name": "feed",
        "concurrent_connections": 1234,
        "auth": "none",
        "use_cases": ["live_feed"],
        "client_environments": ["server"],
        "allowed_origins": ["https://x.example.com"],
    }
    script = {key: ... for key in FULL_SCRIPT}
    ask = ScriptedAsk(script)
    answers = ask_requirements(layered, ask=ask)
    assert answers["project_name"] == "feed"
    assert answers["concurrent_connections"] == 1234
    assert answers["auth"] == "none"
    assert answers["use_cases"] == ["live_feed"]
    # No browser among the clients: the origins question is not asked, so the answers file's
    # value survives the merge.
    assert answers["allowed_origins"] == ["https://x.example.com"]
    assert "allowed_origins" not in [key for _, key, _ in ask.asked]
    # Shown, not inserted: every text prompt starts empty and shows the layered value after it.
    texts = {key: kwargs for kind, key, kwargs in ask.asked if kind == "text"}
    assert all(kwargs["default"] == "" for kwargs in texts.values())
    assert texts["concurrent_connections"]["instruction"].endswith("[1234]")


def test_origins_asked_when_the_user_picks_browser_in_this_session() -> None:
    script = {**{key: ... for key in FULL_SCRIPT}, "use_cases": ["chat"], "client_environments": ["browser"]}
    ask = ScriptedAsk(script)
    answers = ask_requirements({"client_environments": ["server"], "project_name": "x"}, ask=ask)
    assert answers["allowed_origins"] == []


def test_keys_limits_the_questions() -> None:
    ask = ScriptedAsk({"durability": "persistent", "auth": "cookie"})
    answers = ask_requirements(
        {"auth": "jwt", "project_name": "x"}, ask=ask, keys=["auth", "durability"], confirm=False
    )
    assert answers == {"durability": "persistent", "auth": "cookie", "project_name": "x"}
    assert [key for _, key, _ in ask.asked] == ["durability", "auth"]


def test_wizard_answers_win_over_the_lower_layers_and_enums_become_values() -> None:
    from wsforge.requirements import AuthMode, UseCase

    ask = ScriptedAsk({"auth": "cookie"})
    layered = {"auth": AuthMode.JWT, "use_cases": [UseCase.CHAT], "extra": 1}
    answers = ask_requirements(layered, ask=ask, keys=["auth"], confirm=False)
    assert answers == {"auth": "cookie", "use_cases": ["chat"], "extra": 1}


def test_typing_replaces_the_default_instead_of_appending_to_it() -> None:
    """At "Peak concurrent connections [1000]", typing 5000 gives 5000 (it gave 10005000)."""
    ask = ScriptedAsk({**FULL_SCRIPT, "concurrent_connections": "5000"})
    answers = ask_requirements({"concurrent_connections": 1000}, ask=ask)
    assert answers["concurrent_connections"] == 5000


def test_enter_keeps_the_shown_default() -> None:
    """A blank answer keeps the default shown in brackets."""
    ask = ScriptedAsk({**FULL_SCRIPT, "concurrent_connections": ""})
    answers = ask_requirements({"concurrent_connections": 1000}, ask=ask)
    assert answers["concurrent_connections"] == 1000
    kwargs = next(kw for _, key, kw in ask.asked if key == "concurrent_connections")
    assert kwargs["validate"]("") is True


def test_enter_on_an_invalid_lower_layer_value_is_refused_at_the_prompt() -> None:
    """A default from memory that no longer validates is shown, but Enter does not accept it."""
    ask = ScriptedAsk({**FULL_SCRIPT, "avg_payload_bytes": "100"})
    ask_requirements({"avg_payload_bytes": 0}, ask=ask)
    kwargs = next(kw for _, key, kw in ask.asked if key == "avg_payload_bytes")
    assert kwargs["instruction"].endswith("[0]")
    assert kwargs["validate"]("") == "must be at least 1"
    assert kwargs["validate"]("100") is True


def test_dash_clears_an_optional_default() -> None:
    """`-` answers "none" where none is allowed; elsewhere it is validated like any text."""
    ask = ScriptedAsk({**FULL_SCRIPT, "avg_subscribers_per_channel": "-", "allowed_origins": "-"})
    answers = ask_requirements(
        {"avg_subscribers_per_channel": 20, "allowed_origins": ["https://a.example.com"]}, ask=ask
    )
    assert answers["avg_subscribers_per_channel"] is None
    assert answers["allowed_origins"] == []


def test_each_question_prints_its_help_and_the_summary_lists_every_answer() -> None:
    """Help is shown above each prompt; the summary shows every asked question's answer before the confirm."""
    said: list[str] = []
    ask = ScriptedAsk(FULL_SCRIPT)
    answers = ask_requirements({}, ask=ask, say=said.append)
    for question in QUESTIONS:
        assert f"  {question.help}" in said, question.key
    summary = said[-1]
    assert "Your answers:" in summary
    assert "Peak concurrent connections" in summary and "20,000" in summary
    assert summarise(answers, QUESTIONS) == summary


def test_edit_re_asks_one_question_and_summarises_again() -> None:
    """Choosing edit re-asks the chosen question with its current answer, then asks to confirm again."""
    said: list[str] = []
    script = {
        **FULL_SCRIPT,
        "concurrent_connections": ("20k", "5000"),
        "_confirm": [CONFIRM_EDIT, CONFIRM_WRITE],
        "_edit": ["concurrent_connections"],
    }
    ask = ScriptedAsk(script)
    answers = ask_requirements({}, ask=ask, say=said.append)
    assert answers["concurrent_connections"] == 5000
    keys = [key for _, key, _ in ask.asked]
    assert keys[-4:] == ["_confirm", "_edit", "concurrent_connections", "_confirm"]
    assert "5,000" in said[-1]
    edited = [kw for _, key, kw in ask.asked if key == "concurrent_connections"][-1]
    assert edited["instruction"].endswith("[20000]")


def test_edit_that_adds_browser_clients_asks_the_origins_question() -> None:
    """An edit can make a skipped question relevant; it is asked before confirming again."""
    script = {
        **FULL_SCRIPT,
        "client_environments": (["server"], ["browser"]),
        "allowed_origins": "https://app.example.com",
        "_confirm": [CONFIRM_EDIT, CONFIRM_WRITE],
        "_edit": ["client_environments"],
    }
    ask = ScriptedAsk(script)
    answers = ask_requirements({}, ask=ask)
    assert answers["client_environments"] == ["browser"]
    assert answers["allowed_origins"] == ["https://app.example.com"]
    keys = [key for _, key, _ in ask.asked]
    assert keys[-5:] == ["_confirm", "_edit", "client_environments", "allowed_origins", "_confirm"]


def test_cancel_at_the_summary_interrupts() -> None:
    """Cancel writes nothing: it raises KeyboardInterrupt like Ctrl-C (exit 130)."""
    ask = ScriptedAsk({**FULL_SCRIPT, "_confirm": [CONFIRM_CANCEL]})
    with pytest.raises(KeyboardInterrupt):
        ask_requirements({}, ask=ask)


def test_ctrl_c_propagates_as_keyboard_interrupt() -> None:
    ask = ScriptedAsk({**FULL_SCRIPT, "durability": KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        ask_requirements({}, ask=ask)


def test_end_of_input_asks_for_an_answers_file() -> None:
    ask = ScriptedAsk({**FULL_SCRIPT, "concurrent_connections": EOFError()})
    with pytest.raises(InteractiveSessionRequired, match="--answers FILE or --non-interactive"):
        ask_requirements({}, ask=ask)


def test_no_terminal_is_refused_before_any_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest captures stdin/stdout, so the real questionary adapter sees no terminal here.
    with pytest.raises(InteractiveSessionRequired, match="--answers FILE or --non-interactive"):
        ask_requirements({}, ask=questionary)


def test_question_is_frozen_data() -> None:
    question = BY_KEY["auth"]
    assert isinstance(question, Question)
    with pytest.raises(Exception):  # noqa: B017 (pydantic's frozen error type is an implementation detail)
        question.key = "other"  # type: ignore[misc]


# --- publishers: derived from the earlier answers, shown pre-ticked --------------------------------


def _ticked(ask: ScriptedAsk, key: str) -> list[str]:
    kwargs = next(kw for _, k, kw in ask.asked if k == key)
    return [c.value for c in kwargs["choices"] if c.checked]


def test_publishers_default_is_derived_from_the_earlier_answers_and_shown_in_the_summary() -> None:
    """A server-push feed: the backend publishes. The user sees it ticked and confirms it."""
    said: list[str] = []
    script = {
        **FULL_SCRIPT,
        "use_cases": ["live_feed"],
        "message_patterns": ["server_push"],
        "client_environments": ["browser"],
    }
    ask = ScriptedAsk(script)
    answers = ask_requirements({}, ask=ask, say=said.append)
    assert _ticked(ask, "publishers") == ["backend"]
    assert answers["publishers"] == ["backend"]
    assert "Who publishes messages into the system?" in said[-1]
    assert build_requirements(answers).publisher_roles[0].value == "backend"


def test_publishers_derived_for_clients_that_send() -> None:
    """Chat from browsers and phones: those clients publish; nothing else is assumed."""
    ask = ScriptedAsk(FULL_SCRIPT)
    answers = ask_requirements({}, ask=ask)
    assert _ticked(ask, "publishers") == ["browser", "mobile"]
    assert answers["publishers"] == ["browser", "mobile"]


def test_publishers_from_a_lower_layer_win_over_the_derivation() -> None:
    ask = ScriptedAsk(FULL_SCRIPT)
    answers = ask_requirements({"publishers": ["device", "backend"]}, ask=ask)
    assert _ticked(ask, "publishers") == ["backend", "device"]
    assert answers["publishers"] == ["backend", "device"]


def test_publishers_needs_at_least_one() -> None:
    assert BY_KEY["publishers"].check([]) == "pick at least one (space toggles a choice)"
    assert BY_KEY["publishers"].check(["backend"]) is None
