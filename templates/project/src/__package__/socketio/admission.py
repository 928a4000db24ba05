"""The Socket.IO request's query string: which requests at ``socketio_path`` may become a session.

Engine.IO 4 only. ``transport=websocket`` without ``sid`` opens a WebSocket session; with the
``sid`` of a long-polling session it upgrades that session (``polling.py``); ``transport=polling``
is served when the listener routes HTTP itself (``transport/http_front.py``, setting
``socketio_polling``). Anything else gets Engine.IO's own error body (``{"code", "message"}``,
HTTP 400) so that a client library reports it clearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

import orjson

from ..transport import HttpResponse

_TRANSPORT_UNKNOWN: Final = 0
_SESSION_UNKNOWN: Final = 1
_UNSUPPORTED_VERSION: Final = 5
MAX_SID: Final = 64


@dataclass(frozen=True, slots=True)
class EngineQuery:
    """A well-formed Engine.IO 4 request: its transport and, after the handshake, its session."""

    transport: str
    sid: str | None


def check_query(query: str, *, polling: bool = False) -> EngineQuery | HttpResponse:
    """What ``query`` asks for, or the 400 to send; ``polling``: long-polling is served here."""
    params = parse_qs(query, max_num_fields=32)
    version = params.get("EIO", [""])[0]
    if version != "4":
        return _error(
            _UNSUPPORTED_VERSION, "Unsupported protocol version: this server speaks Engine.IO 4 (EIO=4)"
        )
    transport = params.get("transport", [""])[0]
    served = ("websocket", "polling") if polling else ("websocket",)
    if transport not in served:
        message = f"Transport unknown: {transport[:32]!r}; this server serves transport={' or '.join(served)}"
        return _error(_TRANSPORT_UNKNOWN, message)
    sid = params.get("sid", [None])[0]
    if sid is not None and not (polling and 0 < len(sid) <= MAX_SID):
        return session_unknown()
    return EngineQuery(transport, sid)


def session_unknown() -> HttpResponse:
    return _error(_SESSION_UNKNOWN, "Session ID unknown")


def _error(code: int, message: str) -> HttpResponse:
    return HttpResponse(400, orjson.dumps({"code": code, "message": message}), "application/json")
