"""Opt-in recording of message flows as JSON Lines, for debugging and ``wsforge replay``.

Off unless ``WS_RECORD_PATH`` is set. Each line is one event::

    {"ts": 1764280000123, "conn": "9f2c...", "dir": "in", "kind": "text", "frame": {...}}

``dir`` is ``open`` (with ``subprotocol``), ``in`` (client to server), ``out`` (server to client)
or ``close``. Frames are decoded (JSON, or msgpack when installed) so the file is readable; tokens
and the configured fields are replaced by ``"[redacted]"`` before anything is written, and any
string that looks like a JWT is redacted wherever it appears. The file is rotated at
``WS_RECORD_MAX_BYTES`` (``path.1`` ... ``path.<backups>``), so recording can stay on for a while
without filling the disk.

Configuration (environment):

- ``WS_RECORD_PATH``: file to write; empty or unset disables recording.
- ``WS_RECORD_CHANNELS``: comma-separated channels or namespaces (``room`` or ``room:lobby``) to
  record; frames without a channel (pings, errors) are kept for recorded connections.
- ``WS_RECORD_CONNECTIONS``: comma-separated connection ids or user ids to record.
- ``WS_RECORD_REDACT``: extra field names to redact (``token``, ``password``, ``access_token``,
  ``authorization`` and ``secret`` always are).
- ``WS_RECORD_MAX_BYTES`` (default 10 MiB) and ``WS_RECORD_BACKUPS`` (default 3).

Writes are synchronous appends of one short line; recording is a debugging aid, not a hot path.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ALWAYS_REDACTED = frozenset({"token", "password", "access_token", "authorization", "secret", "refresh_token"})
REDACTED = "[redacted]"
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def redact(value: Any, fields: frozenset[str]) -> Any:
    """A copy of ``value`` with secret fields and JWT-looking strings replaced."""
    if isinstance(value, dict):
        return {
            key: REDACTED if str(key).lower() in fields else redact(item, fields) for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, fields) for item in value]
    if isinstance(value, str):
        return JWT_RE.sub(REDACTED, value)
    return value


def decode_frame(data: bytes | str) -> tuple[str, Any]:
    """``(kind, readable form)`` of one frame: parsed JSON, msgpack, or base64 as a fallback."""
    if isinstance(data, str):
        try:
            return "text", json.loads(data)
        except ValueError:
            return "text", {"raw": data}
    try:
        return "text", json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        pass
    try:
        import msgpack

        return "binary", msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # any undecodable frame is still recorded, as base64
        return "binary", {"base64": base64.b64encode(data).decode("ascii")}


class Recorder:
    """Appends redacted frames to a rotating JSON Lines file. Create with :meth:`from_env`."""

    def __init__(
        self,
        path: Path,
        *,
        channels: frozenset[str] = frozenset(),
        connections: frozenset[str] = frozenset(),
        redact_fields: frozenset[str] = frozenset(),
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.channels = channels
        self.connections = connections
        self.redact_fields = ALWAYS_REDACTED | {f.lower() for f in redact_fields}
        self.max_bytes = max_bytes
        self.backups = backups
        self.clock = clock
        self._users: dict[str, str] = {}
        path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Recorder | None:
        """A recorder configured from ``WS_RECORD_*``, or None when recording is off."""
        env = os.environ if environ is None else environ
        path = env.get("WS_RECORD_PATH", "").strip()
        if not path:
            return None

        def csv(name: str) -> frozenset[str]:
            return frozenset(item.strip() for item in env.get(name, "").split(",") if item.strip())

        return cls(
            Path(path),
            channels=csv("WS_RECORD_CHANNELS"),
            connections=csv("WS_RECORD_CONNECTIONS"),
            redact_fields=csv("WS_RECORD_REDACT"),
            max_bytes=int(env.get("WS_RECORD_MAX_BYTES", str(10 * 1024 * 1024))),
            backups=int(env.get("WS_RECORD_BACKUPS", "3")),
        )

    def opened(self, conn: str, user: str | None, subprotocol: str | None) -> None:
        if user is not None:
            self._users[conn] = user
        if self._connection_wanted(conn):
            self._write({"conn": conn, "dir": "open", "user": user, "subprotocol": subprotocol})

    def closed(self, conn: str, code: int | None) -> None:
        if self._connection_wanted(conn):
            self._write({"conn": conn, "dir": "close", "code": code})
        self._users.pop(conn, None)

    def inbound(self, conn: str, data: bytes | str) -> None:
        self._frame(conn, "in", data)

    def outbound(self, conn: str, data: bytes | str) -> None:
        self._frame(conn, "out", data)

    def _connection_wanted(self, conn: str) -> bool:
        return not self.connections or conn in self.connections or self._users.get(conn) in self.connections

    def _channel_wanted(self, frame: Any) -> bool:
        if not self.channels or not isinstance(frame, dict):
            return True
        channel = frame.get("channel")
        if not isinstance(channel, str):
            return True
        return channel in self.channels or any(channel.startswith(f"{ns}:") for ns in self.channels)

    def _frame(self, conn: str, direction: str, data: bytes | str) -> None:
        if not self._connection_wanted(conn):
            return
        kind, frame = decode_frame(data)
        if not self._channel_wanted(frame):
            return
        self._write({"conn": conn, "dir": direction, "kind": kind, "frame": redact(frame, self.redact_fields)})

    def _write(self, event: dict[str, Any]) -> None:
        line = json.dumps({"ts": int(self.clock() * 1000), **event}, separators=(",", ":"), default=str) + "\n"
        encoded = line.encode("utf-8")
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(encoded) > self.max_bytes:
            self._rotate()
        with self.path.open("ab") as handle:
            handle.write(encoded)

    def _rotate(self) -> None:
        for index in range(self.backups, 0, -1):
            source = self.path if index == 1 else self.path.with_name(f"{self.path.name}.{index - 1}")
            if source.exists():
                os.replace(source, self.path.with_name(f"{self.path.name}.{index}"))
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
