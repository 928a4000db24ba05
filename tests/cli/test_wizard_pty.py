"""Drive the real questionary TUI through a pseudo-terminal (pexpect).

The child process runs :func:`wsforge.wizard.ask_requirements` with the real questionary module,
as the CLI does, and prints the answers as JSON. Keys are sent as a user would type them: Enter
accepts the default shown in brackets (text prompts start empty), space toggles a checkbox, the
down arrow moves a selection, Ctrl-U clears what was typed. After the last question the answers
are summarised and Enter on the confirmation writes.

prompt_toolkit asks the terminal where the cursor is (CPR, ``ESC [6n``) and, without a reply, waits
about a second per prompt and then hides its bottom toolbar, where validation messages appear.
:class:`Terminal` answers those requests as a real terminal does. Every wait is a multiple of
``UNIT`` (seconds), scaled by ``WSFORGE_TESTS_TIMEOUT_FACTOR``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect  # type: ignore[import-untyped, unused-ignore]
import pytest

from wsforge.requirements import build_requirements

pytestmark = pytest.mark.slow  # drives the real terminal UI through a pty, one process per test

REPO = Path(__file__).resolve().parents[2]
UNIT = 1.0 * float(os.environ.get("WSFORGE_TESTS_TIMEOUT_FACTOR", "1"))

DOWN = "\x1b[B"
ENTER = "\r"
CTRL_C = "\x03"
CTRL_U = "\x15"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

DRIVER = textwrap.dedent(
    """
    import json, sys
    from wsforge.errors import InteractiveSessionRequired
    from wsforge.wizard import ask_requirements

    defaults = json.loads(sys.argv[1])
    try:
        answers = ask_requirements(defaults)
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)
    except InteractiveSessionRequired as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print("RESULT=" + json.dumps(answers), flush=True)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TERM="xterm",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        NO_COLOR="1",
    )
    return env


CPR_REQUEST = "\x1b\\[6n"


class Terminal:
    """A pexpect child plus the one terminal reply prompt_toolkit needs (cursor position)."""

    def __init__(self, args: list[str], cwd: Path = REPO) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            args,
            cwd=str(cwd),
            env=_env(),
            encoding="utf-8",
            timeout=10 * UNIT,
            dimensions=(40, 120),
        )

    def expect(self, pattern: str | type[pexpect.EOF]) -> None:
        while self.child.expect([pattern, CPR_REQUEST]) == 1:
            self.child.send("\x1b[1;1R")

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def finish(self) -> int:
        self.expect(pexpect.EOF)
        self.child.close()
        return int(self.child.exitstatus)


@pytest.fixture
def wizard() -> Iterator[Callable[[dict[str, object]], Terminal]]:
    terminals: list[Terminal] = []

    def start(defaults: dict[str, object]) -> Terminal:
        terminals.append(Terminal(["-c", DRIVER, json.dumps(defaults)]))
        return terminals[-1]

    yield start
    for terminal in terminals:
        if terminal.child.isalive():
            terminal.child.terminate(force=True)


def test_full_session_through_the_terminal(wizard: Callable[[dict[str, object]], Terminal]) -> None:
    child = wizard({"project_name": "chat-demo", "messages_per_second": 250})
    child.expect("Project name")
    child.send(ENTER)  # pre-filled from the lower layers
    child.expect("real-time traffic")
    child.send(ENTER)  # nothing picked yet: refused, the prompt stays
    child.expect("pick at least one")
    child.send(" " + ENTER)  # toggle the first use case (chat)
    child.expect("Who sends")
    child.send(ENTER)
    child.expect("concurrent connections")
    child.send(CTRL_U + "lots" + ENTER)
    child.expect("enter a whole number")
    child.send(CTRL_U + "20k" + ENTER)
    child.expect("messages per second")
    child.send(ENTER)
    child.expect("payload size")
    # One validation message per prompt: prompt_toolkit redraws only the cells that change, so a
    # second message on the same toolbar would not appear as contiguous text in the stream.
    child.send(CTRL_U + "0" + ENTER)
    child.expect("must be at least 1")
    child.send(CTRL_U + "512" + ENTER)
    child.expect("latency target")
    child.send(ENTER)
    child.expect("Where do clients run")
    child.send(ENTER)  # browser is pre-checked
    child.expect("Who publishes")
    child.send(ENTER)  # derived from the answers so far: browsers (chat, bidirectional)
    child.expect("misses")
    child.send(DOWN + ENTER)  # second choice: replay
    child.expect("authenticate")
    child.send(ENTER)
    child.expect("origins")
    child.send("ftp://chat.example.com" + ENTER)
    child.expect("is not an origin")
    child.send(CTRL_U + "https://chat.example.com, http://localhost:8000" + ENTER)
    child.expect("Wire encoding")
    child.send(ENTER)
    child.expect("subscribers per channel")
    child.send(ENTER)
    child.expect("already run")
    child.send(DOWN + ENTER)  # second choice: FastAPI
    child.expect("protocol do clients speak")
    child.send(DOWN + DOWN + ENTER)  # third choice: Socket.IO
    child.expect("Your answers:")
    child.expect("Write the project with these answers")
    child.send(ENTER)
    child.expect(r"RESULT=(\{.*\})\r\n")
    answers = json.loads(child.child.match.group(1))
    assert child.finish() == 0

    assert answers == {
        "project_name": "chat-demo",
        "use_cases": ["chat"],
        "message_patterns": ["bidirectional"],
        "concurrent_connections": 20_000,
        "messages_per_second": 250,
        "avg_payload_bytes": 512,
        "latency_class": "sub_100ms",
        "client_environments": ["browser"],
        "publishers": ["browser"],
        "durability": "replay",
        "auth": "jwt",
        "allowed_origins": ["https://chat.example.com", "http://localhost:8000"],
        "serialization": "auto",
        "avg_subscribers_per_channel": None,
        "existing_app": "fastapi",
        "client_protocol": "socketio",
    }
    assert build_requirements(answers).concurrent_connections == 20_000


def _answer_the_rest(child: Terminal) -> None:
    """Enter through every question after the connections one (browser origins left blank)."""
    for prompt in (
        "messages per second",
        "payload size",
        "latency target",
        "Where do clients run",
        "Who publishes",
    ):
        child.expect(prompt)
        child.send(ENTER)
    for prompt in (
        "misses",
        "authenticate",
        "origins",
        "Wire encoding",
        "subscribers per channel",
        "already run",
        "protocol do clients speak",
    ):
        child.expect(prompt)
        child.send(ENTER)


def _start_at_connections(wizard: Callable[[dict[str, object]], Terminal]) -> Terminal:
    child = wizard({"project_name": "chat-demo", "use_cases": ["chat"], "concurrent_connections": 1000})
    child.expect("Project name")
    child.send(ENTER)
    child.expect("real-time traffic")
    child.send(ENTER)
    child.expect("Who sends")
    child.send(ENTER)
    child.expect("Peak concurrent connections")
    child.expect(r"\[1000\]")  # the default is shown after the prompt, not typed into the field
    return child


def test_typing_a_number_replaces_the_shown_default(wizard: Callable[[dict[str, object]], Terminal]) -> None:
    """At "Peak concurrent connections [1000]", typing 5000 gives 5000, not 10005000."""
    child = _start_at_connections(wizard)
    child.send("5000" + ENTER)
    _answer_the_rest(child)
    child.expect("Write the project with these answers")
    child.send(ENTER)
    child.expect(r"RESULT=(\{.*\})\r\n")
    assert json.loads(child.child.match.group(1))["concurrent_connections"] == 5000
    assert child.finish() == 0


def test_enter_keeps_the_shown_default(wizard: Callable[[dict[str, object]], Terminal]) -> None:
    """Enter on an empty field accepts the default in brackets."""
    child = _start_at_connections(wizard)
    child.send(ENTER)
    _answer_the_rest(child)
    child.expect("Write the project with these answers")
    child.send(ENTER)
    child.expect(r"RESULT=(\{.*\})\r\n")
    assert json.loads(child.child.match.group(1))["concurrent_connections"] == 1000
    assert child.finish() == 0


def test_help_summary_and_edit_before_anything_is_written(
    wizard: Callable[[dict[str, object]], Terminal],
) -> None:
    """Each question's help is shown; the summary lists the answers; edit re-asks one, then confirm."""
    child = wizard({"project_name": "chat-demo", "use_cases": ["chat"], "concurrent_connections": 1000})
    child.expect("Python package")  # project_name's help line, above its prompt
    child.expect("Project name")
    child.send(ENTER)
    child.expect("real-time traffic")
    child.send(ENTER)
    child.expect("Who sends")
    child.send(ENTER)
    child.expect("a broker fans messages out")  # concurrent_connections' help line
    child.expect(r"\[1000\]")
    child.send("5000" + ENTER)
    _answer_the_rest(child)
    child.expect("Your answers:")
    child.expect(r"Peak concurrent connections\s+5,000")
    child.expect("Write the project with these answers")
    child.send(DOWN + ENTER)  # edit an answer
    child.expect("Which answer do you want to change")
    child.send(DOWN * 3 + ENTER)  # project name, use cases, who sends, connections
    child.expect(r"\[5000\]")
    child.send("7k" + ENTER)
    child.expect(r"Peak concurrent connections\s+7,000")
    child.expect("Write the project with these answers")
    child.send(ENTER)
    child.expect(r"RESULT=(\{.*\})\r\n")
    assert json.loads(child.child.match.group(1))["concurrent_connections"] == 7000
    assert child.finish() == 0


def test_cancel_at_the_summary_writes_nothing(wizard: Callable[[dict[str, object]], Terminal]) -> None:
    """The third choice cancels: exit 130 and no answers."""
    child = _start_at_connections(wizard)
    child.send(ENTER)
    _answer_the_rest(child)
    child.expect("Write the project with these answers")
    child.send(DOWN + DOWN + ENTER)
    child.expect("interrupted; nothing was written")
    assert child.finish() == 130


def test_ctrl_c_interrupts_without_answers(wizard: Callable[[dict[str, object]], Terminal]) -> None:
    child = wizard({"project_name": "chat-demo"})
    child.expect("Project name")
    child.send(ENTER)
    child.expect("real-time traffic")
    child.send(CTRL_C)
    child.expect("interrupted; nothing was written")
    assert child.finish() == 130
    assert "RESULT=" not in (child.child.before or "")


def test_no_terminal_points_to_answers_file() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, "{}"],
        cwd=str(REPO),
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10 * UNIT,
        check=False,
    )
    assert proc.returncode == 1
    assert "use --answers FILE or --non-interactive" in proc.stderr
    assert "RESULT=" not in proc.stdout


def test_wsforge_new_runs_the_wizard(tmp_path: Path) -> None:
    """The real command: answers typed in the TUI reach step 2 (a dry run, so nothing is written)."""
    terminal = Terminal(
        ["-m", "wsforge", "new", "--output", str(tmp_path / "out"), "--dry-run", "--format", "json"],
        cwd=tmp_path,
    )
    try:
        terminal.expect("Project name")
        terminal.send("pty-demo" + ENTER)
        terminal.expect("real-time traffic")
        terminal.send(" " + ENTER)
        terminal.expect("Who sends")
        terminal.send(ENTER)
        terminal.expect("concurrent connections")
        terminal.send(CTRL_U + "2M" + ENTER)  # far beyond one instance: step 2 must scale out
        for prompt in ("messages per second", "payload size", "latency target"):
            terminal.expect(prompt)
            terminal.send(ENTER)
        terminal.expect("Where do clients run")
        terminal.send(" " + DOWN + DOWN + DOWN + " " + ENTER)  # browser off, server on
        terminal.expect("Who publishes")
        terminal.send(ENTER)  # derived: a bidirectional chat from servers is published by the backend
        # No browser: the origins question is skipped.
        for prompt in (
            "misses",
            "authenticate",
            "Wire encoding",
            "subscribers per channel",
            "already run",
            "protocol do clients speak",
        ):
            terminal.expect(prompt)
            terminal.send(ENTER)
        terminal.expect("Write the project with these answers")
        terminal.send(ENTER)
        assert terminal.finish() == 0
    finally:
        if terminal.child.isalive():
            terminal.child.terminate(force=True)
    # rich styles the JSON (bold keys) even with NO_COLOR; strip the escapes before parsing.
    output = ANSI.sub("", terminal.child.before or "")
    summary = json.loads(output[output.index("\n{") :])
    assert summary["project"] == "pty-demo"
    assert summary["dry_run"] is True
    assert "src/pty_demo/settings.py" in summary["files"]
    step1, step2 = summary["checklist"][0], next(c for c in summary["checklist"] if c["step"] == 2)
    assert step1["detail"] == "answers from <wizard>"
    instances = int(re.search(r"(\d+) instance", step2["detail"]).group(1))  # type: ignore[union-attr]
    assert instances > 1, step2["detail"]
    assert list(tmp_path.iterdir()) == [], "a dry run writes nothing"


def test_wsforge_new_ctrl_c_writes_nothing(tmp_path: Path) -> None:
    terminal = Terminal(["-m", "wsforge", "new", "--output", str(tmp_path / "out")], cwd=tmp_path)
    try:
        terminal.expect("Project name")
        terminal.send("pty-demo" + ENTER)
        terminal.expect("real-time traffic")
        terminal.send(CTRL_C)
        terminal.expect("interrupted; nothing was written")
        assert terminal.finish() == 130
    finally:
        if terminal.child.isalive():
            terminal.child.terminate(force=True)
    assert list(tmp_path.iterdir()) == [], "nothing was written"
