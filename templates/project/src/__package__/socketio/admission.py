"""The Socket.IO upgrade's query string: which requests at ``socketio_path`` may become a session.

Only Engine.IO 4 over the WebSocket transport is served today; other requests get Engine.IO's
own error body (``{"code", "message"}``, HTTP 400) so that a client library reports them clearly.
HTTP long-polling (``transport=polling``) answers "Transport unknown": clients set
``transports: ["websocket"]``.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs

import orjson

from ..transport import HttpResponse

_TRANSPORT_UNKNOWN: Final = 0
_SESSION_UNKNOWN: Final = 1
_UNSUPPORTED_VERSION: Final = 5


def check_query(query: str) -> HttpResponse | None:
    """None when ``query`` asks for a new Engine.IO 4 WebSocket session, else the 400 to send."""
    params = parse_qs(query, max_num_fields=32)
    version = params.get("EIO", [""])[0]
    if version != "4":
        return _error(
            _UNSUPPORTED_VERSION, "Unsupported protocol version: this server speaks Engine.IO 4 (EIO=4)"
        )
    transport = params.get("transport", [""])[0]
    if transport != "websocket":
        message = f"Transport unknown: {transport[:32]!r}; this server serves transport=websocket only"
        return _error(_TRANSPORT_UNKNOWN, message)
    if "sid" in params:
        return _error(_SESSION_UNKNOWN, "Session ID unknown: no long-polling session to upgrade")
    return None


def _error(code: int, message: str) -> HttpResponse:
    return HttpResponse(400, orjson.dumps({"code": code, "message": message}), "application/json")
