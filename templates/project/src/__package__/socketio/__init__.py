"""Socket.IO v5 / Engine.IO v4 clients, served by the same core as the native endpoint.

``socket.io-client`` in any language connects to ``settings.socketio_path`` (WebSocket, or
long-polling then WebSocket): the front door admits the upgrade with the native endpoint's checks (Origin allowlist,
per-IP caps, token from header, query or cookie, though here a missing token is allowed until
the CONNECT's ``auth``), :class:`~.session.SocketIOGate` completes the Engine.IO/Socket.IO
handshake, and the server then runs the very same ``dispatch.Session`` over a
:class:`~.session.SocketIOLink`: one dispatch, one channel model, one set of limits. How events
map onto the core's actions is ``bridge.py``'s docstring (and the protocol document).

Modules: ``packets.py`` (wire format), ``bridge.py`` (events <-> envelopes), ``session.py``
(handshake, heartbeat, the Link), ``admission.py`` (the query string), ``polling.py`` (HTTP
long-polling and its upgrade to WebSocket), ``attachments.py`` (binary attachments <-> the
core's ``{"_binary": "<base64>"}`` marker).
"""

from __future__ import annotations

from .admission import EngineQuery, check_query, session_unknown
from .polling import PollingLink, PollingSessions, UpgradeAdmission
from .session import SocketIOAdmission, SocketIOGate, SocketIOLink

__all__ = [
    "EngineQuery",
    "PollingLink",
    "PollingSessions",
    "SocketIOAdmission",
    "SocketIOGate",
    "SocketIOLink",
    "UpgradeAdmission",
    "check_query",
    "session_unknown",
]
