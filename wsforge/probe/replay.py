"""Replay a recorded session (the generated server's ``WS_RECORD_PATH`` file) against a server.

Each recorded connection is reopened (with a token for the recorded user when a JWT secret is
given), its client frames are re-sent at the original pace divided by ``speed``, and what comes
back is compared, frame by frame, with what the server sent during the recording. Values that
legitimately change between runs (``ts``, ``epoch``, ``exp``, ``retry_after_ms``) are ignored.
This is how a production issue captured by the recorder is reproduced locally.
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
        session = sessions.setdefault(conn, RecordedSession(conn))
        if direction == "open":
            session.user = event.get("user")
            session.subprotocol = event.get("subprotocol")
        elif direction in ("in", "out"):
            session.events.append(
                (int(event.get("ts", 0)), direction, event.get("kind", "text"), event.get("frame"))
            )
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
    """Re-send every session concurrently and compare the answers with the recording.

    Args:
        speed: divide the recorded gaps by this; None sends as fast as possible.
        settle_s: how long to wait for answers after the last frame of a session.
    """
    result = ReplayResult(sessions=len(sessions))
    start = time.monotonic()
    await asyncio.gather(
        *(
            _replay_one(
                s, url, result, start, speed, token, jwt_secret, jwt_algorithm, origin, settle_s, timeout_s
            )
            for s in sessions
        )
    )
    return result


async def _replay_one(
    session: RecordedSession,
    url: str,
    result: ReplayResult,
    start: float,
    speed: float | None,
    token: str | None,
    jwt_secret: str | None,
    jwt_algorithm: str,
    origin: str | None,
    settle_s: float,
    timeout_s: float,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    headers: dict[str, str] = {}
    bearer = token
    if bearer is None and jwt_secret and session.user:
        import jwt

        now = int(time.time())
        bearer = jwt.encode(
            {"sub": session.user, "iat": now, "exp": now + 3600}, jwt_secret, algorithm=jwt_algorithm
        )
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    received: list[Any] = []
    expected = session.expected
    sent = session.sent
    first_ts = sent[0][0]
    try:
        async with connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            subprotocols=[session.subprotocol] if session.subprotocol else None,  # type: ignore[list-item]
            open_timeout=timeout_s,
            max_size=None,
        ) as ws:

            async def reader() -> None:
                try:
                    async for message in ws:
                        received.append(_decode(message))
                except ConnectionClosed:
                    pass

            reading = asyncio.create_task(reader())
            for ts, kind, frame in sent:
                if speed is not None:
                    delay = start + (ts - first_ts) / 1000 / speed - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await ws.send(_encode(kind, substitute_redacted(frame, bearer)))
                result.frames_sent += 1
            deadline = time.monotonic() + settle_s
            while len(received) < len(expected) and time.monotonic() < deadline and not reading.done():
                await asyncio.sleep(0.02)
            await ws.close()
            await asyncio.wait_for(reading, timeout_s)
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        result.errors.append(f"{session.conn}: {type(exc).__name__}: {exc}")
        return
    result.frames_expected += len(expected)
    result.frames_received += len(received)
    for index in range(max(len(expected), len(received))):
        want = normalize(expected[index]) if index < len(expected) else None
        got = normalize(received[index]) if index < len(received) else None
        if want != got:
            result.differences.append(Difference(session.conn, index, want, got))
            break
