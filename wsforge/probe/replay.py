"""Replay a recorded session (the generated server's ``WS_RECORD_PATH`` file) against a server.

Each recorded connection is reopened (with a token for the recorded user when a JWT secret is
given) and the client frames of *all* connections are re-sent in their recorded order: before a
connection opens, sends or closes, replay waits until every connection has received as many frames
as it had at that point of the recording (bounded by ``settle_s``), so a message another client
caused arrives before the next step, as it did when it was recorded. With ``speed``, the recorded
gaps (divided by it) are kept as well; ``--as-fast`` keeps only the order.

What comes back is compared, frame by frame per connection, with what the server sent during the
recording. Values that legitimately change between runs are ignored: timestamps (``ts``, ``iat``,
``exp``), channel epochs (``epoch``: a fresh server starts a new history) and ``retry_after_ms``;
connections are matched by their recorded order, not by the server's connection ids. Sequence
numbers are compared exactly: replay is meant for a fresh server (the recorded ones start at 0),
where the same frames in the same order give the same ``seq``, and a different ``seq`` is a real
divergence (a lost or reordered message). This is how a production issue captured by the recorder
is reproduced locally.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

VOLATILE_KEYS = frozenset({"ts", "epoch", "exp", "retry_after_ms", "iat"})
REDACTED = "[redacted]"


@dataclass(slots=True)
class RecordedSession:
    conn: str
    user: str | None = None
    subprotocol: str | None = None
    events: list[tuple[int, str, str, Any]] = field(default_factory=list)
    """``(ts_ms, dir, kind, frame)`` for ``in`` and ``out`` frames, in recorded order."""
    order: list[int] = field(default_factory=list)
    """The position in the whole recording (all connections) of each of ``events``."""
    opened: tuple[int, int] = (0, -1)
    """``(ts_ms, position)`` of the recorded open."""
    closed: tuple[int, int] | None = None
    """``(ts_ms, position)`` of the recorded close, when the recording has one."""

    @property
    def sent(self) -> list[tuple[int, str, Any]]:
        return [(ts, kind, frame) for ts, d, kind, frame in self.events if d == "in"]

    @property
    def expected(self) -> list[Any]:
        return [frame for _, d, _, frame in self.events if d == "out"]


@dataclass(slots=True)
class Difference:
    conn: str
    index: int
    expected: Any
    got: Any

    def to_dict(self) -> dict[str, Any]:
        return {"conn": self.conn, "index": self.index, "expected": self.expected, "got": self.got}


@dataclass(slots=True)
class ReplayResult:
    sessions: int = 0
    frames_sent: int = 0
    frames_expected: int = 0
    frames_received: int = 0
    differences: list[Difference] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "frames_sent": self.frames_sent,
            "frames_expected": self.frames_expected,
            "frames_received": self.frames_received,
            "differences": [d.to_dict() for d in self.differences],
            "errors": self.errors,
        }


def load_recording(path: Path, *, connections: set[str] | None = None) -> list[RecordedSession]:
    """Read a recording; ``connections`` keeps only those connection (or user) ids.

    Raises:
        UserError: the file cannot be read or a line is not a recorder event (line named).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: recording is not UTF-8 text ({exc.reason} at offset {exc.start})") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read recording: {exc.strerror}") from exc
    sessions: dict[str, RecordedSession] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            conn, direction = str(event["conn"]), event["dir"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}:{number}: not a recorder event: {exc}") from exc
        session = sessions.setdefault(conn, RecordedSession(conn, opened=(int(event.get("ts", 0)), number)))
        if direction == "open":
            session.user = event.get("user")
            session.subprotocol = event.get("subprotocol")
            session.opened = (int(event.get("ts", 0)), number)
        elif direction in ("in", "out"):
            session.events.append(
                (int(event.get("ts", 0)), direction, event.get("kind", "text"), event.get("frame"))
            )
            session.order.append(number)
        elif direction == "close":
            session.closed = (int(event.get("ts", 0)), number)
    selected = [
        s
        for s in sessions.values()
        if not connections or s.conn in connections or (s.user or "") in connections
    ]
    return [s for s in selected if s.sent]


def normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in sorted(value.items()) if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def substitute_redacted(value: Any, token: str | None) -> Any:
    """Put a fresh token where the recorder redacted one (``auth.refresh`` payloads, for instance)."""
    if token is None:
        return value
    if isinstance(value, dict):
        return {k: substitute_redacted(v, token) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_redacted(v, token) for v in value]
    if value == REDACTED:
        return token
    return value


def _encode(kind: str, frame: Any) -> str | bytes:
    if kind == "binary":
        import msgpack  # type: ignore[import-untyped]

        packed: bytes = msgpack.packb(frame, use_bin_type=True)
        return packed
    return json.dumps(frame, separators=(",", ":"))


def _decode(data: str | bytes) -> Any:
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return {"raw": data}
    try:
        import msgpack

        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # any undecodable frame is compared as its hex
        return {"hex": data.hex()}


@dataclass(slots=True)
class _Step:
    position: int
    ts: int
    action: str  # open | in | close
    session: RecordedSession
    kind: str = "text"
    frame: Any = None


def _timeline(sessions: list[RecordedSession]) -> list[_Step]:
    """Every open, client frame and close of ``sessions``, in the order they were recorded."""
    steps: list[_Step] = []
    for session in sessions:
        steps.append(_Step(session.opened[1], session.opened[0], "open", session))
        for (ts, direction, kind, frame), position in zip(session.events, session.order, strict=True):
            if direction == "in":
                steps.append(_Step(position, ts, "in", session, kind, frame))
        if session.closed is not None:
            steps.append(_Step(session.closed[1], session.closed[0], "close", session))
    steps.sort(key=lambda step: (step.position, step.action != "open"))
    return steps


def _expected_before(session: RecordedSession, position: int) -> int:
    """How many frames ``session`` had received when the recording reached ``position``."""
    return sum(
        1
        for (_, d, _, _), at in zip(session.events, session.order, strict=True)
        if d == "out" and at < position
    )


@dataclass
class _Live:
    session: RecordedSession
    bearer: str | None
    received: list[Any] = field(default_factory=list)
    ws: Any = None
    reader: asyncio.Task[None] | None = None
    failed: bool = False
    stalled: bool = False


async def replay(
    sessions: list[RecordedSession],
    url: str,
    *,
    speed: float | None = 1.0,
    token: str | None = None,
    jwt_secret: str | None = None,
    jwt_algorithm: str = "HS256",
    origin: str | None = None,
    settle_s: float = 2.0,
    timeout_s: float = 10.0,
) -> ReplayResult:
    """Re-send every session's frames in the recorded cross-session order; compare the answers.

    Args:
        speed: divide the recorded gaps by this; None keeps only the order (as fast as the server
            answers).
        settle_s: the longest wait, before each step and after the last one, for the frames the
            recording says had arrived by then; a connection that stays short is compared as is.
    """
    result = ReplayResult(sessions=len(sessions))
    live = {s.conn: _Live(s, _bearer(s, token, jwt_secret, jwt_algorithm)) for s in sessions}
    arrived = asyncio.Event()
    steps = _timeline(sessions)
    start = time.monotonic()
    first_ts = steps[0].ts if steps else 0
    try:
        for step in steps:
            state = live[step.session.conn]
            if state.failed:
                continue
            if speed is not None:
                delay = start + (step.ts - first_ts) / 1000 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await _settle(live.values(), arrived, step.position, settle_s)
            if step.action == "open":
                await _open(state, url, origin, timeout_s, arrived, result)
            elif step.action == "in" and state.ws is not None:
                await _send(state, step, result)
            elif step.action == "close" and state.ws is not None:
                await state.ws.close()
        await _settle(live.values(), arrived, None, settle_s)
    finally:
        for state in live.values():
            if state.ws is not None:
                await state.ws.close()
            if state.reader is not None:
                try:
                    await asyncio.wait_for(state.reader, timeout_s)
                except TimeoutError:
                    state.reader.cancel()
    for state in live.values():
        if not state.failed:
            _compare(state, result)
    return result


def _bearer(
    session: RecordedSession, token: str | None, jwt_secret: str | None, algorithm: str
) -> str | None:
    if token is None and jwt_secret and session.user:
        import jwt

        now = int(time.time())
        return jwt.encode(
            {"sub": session.user, "iat": now, "exp": now + 3600}, jwt_secret, algorithm=algorithm
        )
    return token


async def _settle(states: Any, arrived: asyncio.Event, position: int | None, settle_s: float) -> None:
    """Wait until each open connection has what it had at ``position`` (None: the end), or settle_s."""

    def short() -> list[_Live]:
        return [
            s
            for s in states
            if s.ws is not None
            and not s.stalled
            and len(s.received)
            < (len(s.session.expected) if position is None else _expected_before(s.session, position))
            and not (s.reader is not None and s.reader.done())
        ]

    deadline = time.monotonic() + settle_s
    while waiting := short():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            for state in waiting:
                state.stalled = True  # diverged: compared as is, not waited for again
            return
        arrived.clear()
        try:
            await asyncio.wait_for(arrived.wait(), remaining)
        except TimeoutError:
            continue


async def _open(
    state: _Live, url: str, origin: str | None, timeout_s: float, arrived: asyncio.Event, result: ReplayResult
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    headers = {"Authorization": f"Bearer {state.bearer}"} if state.bearer else {}
    session = state.session
    try:
        state.ws = await connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            subprotocols=[session.subprotocol] if session.subprotocol else None,  # type: ignore[list-item]
            open_timeout=timeout_s,
            max_size=None,
        )
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        result.errors.append(f"{session.conn}: {type(exc).__name__}: {exc}")
        state.failed = True
        return

    async def reader() -> None:
        try:
            async for message in state.ws:
                state.received.append(_decode(message))
                arrived.set()
        except ConnectionClosed:
            pass
        finally:
            arrived.set()

    state.reader = asyncio.create_task(reader())


async def _send(state: _Live, step: _Step, result: ReplayResult) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        await state.ws.send(_encode(step.kind, substitute_redacted(step.frame, state.bearer)))
    except ConnectionClosed:
        return  # the server closed it: what it sent until then is compared
    result.frames_sent += 1


def _compare(state: _Live, result: ReplayResult) -> None:
    expected, received = state.session.expected, state.received
    result.frames_expected += len(expected)
    result.frames_received += len(received)
    for index in range(max(len(expected), len(received))):
        want = normalize(expected[index]) if index < len(expected) else None
        got = normalize(received[index]) if index < len(received) else None
        if want != got:
            result.differences.append(Difference(state.session.conn, index, want, got))
            break
