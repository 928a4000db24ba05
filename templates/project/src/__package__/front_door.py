"""The server's front door: every HTTP request before it becomes a WebSocket.

:class:`FrontDoor` decides a request (plain routes, static files, a refusal, or an admitted
WebSocket) and keeps the per-IP accounting that bounds both unfinished handshakes and admitted
connections. It runs once per TCP connection, never per message, so it stays apart from the
server's delivery and request paths; :class:`~.server.Server` composes one and answers the
transport's :class:`~.transport.App` calls through it.
"""

from __future__ import annotations

import importlib
import json
import logging
import mimetypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .auth import ANONYMOUS, AuthError, JwtVerifier, check_origin, extract_token
from .limits import ConnectionLimiter, HandshakeGate, Refusal, client_ip, parse_networks, trusted_address
from .observability import readiness
from .protocol import Codec, select_codec
from .transport import Admission, HandshakeRequest, HttpResponse

if TYPE_CHECKING:
    from .server import Server

logger = logging.getLogger(__name__.rpartition(".")[0] + ".server")
"""The server's logger: these records keep the name they had when this code lived there."""

_CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".ts": "text/plain", ".map": "application/json"}


class FrontDoor:
    """Handshake policy: routes, origin, subprotocol, token, and connection/handshake caps."""

    def __init__(self, server: Server, verifier: JwtVerifier | None, clock: Callable[[], float]) -> None:
        settings = server.settings
        self.server = server
        self.settings = settings
        self.verifier = verifier
        self.clock = clock
        self.limiter = ConnectionLimiter(settings.max_connections_per_ip, settings.max_connections_total)
        self.handshakes = HandshakeGate(
            settings.max_handshakes_per_ip or settings.max_connections_per_ip, settings.max_handshakes_total
        )
        """TCP connections not yet through the handshake (the limiter counts admitted ones)."""
        self._trusted_proxies = parse_networks(settings.trusted_proxies)
        self.socketio: Any = None
        """Socket.IO's gate (``socketio/session.py``) when step 2 rendered Socket.IO, else None."""
        self._socketio_paths: frozenset[str] = frozenset()
        self.polling: Any = None
        """Engine.IO long-polling sessions (``socketio/polling.py``) when served, else None; the
        listener (``transport/http_front.py``) hands polling requests to :meth:`polling_request`."""
        self._sio = socketio = _socketio_package()
        if socketio is not None:
            path = getattr(settings, "socketio_path", "/socket.io/")
            self._socketio_paths = frozenset({path, path.rstrip("/") or "/"})
            self.socketio = socketio.SocketIOGate(
                settings, verifier, clock, server.connection_cut, server.metrics.reject
            )
            if getattr(settings, "socketio_polling", False):
                self.polling = socketio.PollingSessions(
                    settings, lambda request: self._admit(request, socketio=True), server.serve
                )

    def handshake(self, request: HandshakeRequest) -> HttpResponse | Admission:
        """Decide an HTTP request: plain HTTP routes, a refusal, or an admitted WebSocket."""
        if request.path == self.settings.path:
            return self._admit(request)
        if request.path in self._socketio_paths:
            return self._admit_socketio(request)
        if request.path == "/healthz":
            return HttpResponse(200, b"ok\n")
        if request.path == "/readyz":
            status, body = readiness(
                broker_healthy=self.server.broker.healthy,
                shutting_down=self.server.shutting_down,
                connections=len(self.server.connections),
            )
            return HttpResponse(status, json.dumps(body).encode(), "application/json")
        if request.path == "/metrics":
            return HttpResponse(200, self.server.metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8")
        if request.path == "/":
            return self._static("index.html")
        if request.path.startswith("/static/"):
            return self._static(request.path[len("/static/") :])
        return HttpResponse(404, b"not found\n")

    def _refuse(self, status: int, reason: str, text: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
        self.server.metrics.reject(reason)
        logger.info("handshake refused: %s", reason, extra={"event": "refused", "status": status, "reason": reason})
        return HttpResponse(status, f"{text}\n".encode(), headers=headers)

    def handshake_started(self, remote_ip: str) -> bool:
        """:meth:`~.transport.App.handshake_started`; a trusted proxy only counts in the total."""
        refusal = self.handshakes.enter(self._gate_key(remote_ip))
        if refusal is None:
            return True
        self.server.metrics.reject("handshakes_per_ip" if refusal is Refusal.PER_IP else "handshakes_total")
        return False

    def handshake_ended(self, remote_ip: str) -> None:
        self.handshakes.leave(self._gate_key(remote_ip))

    def _gate_key(self, remote_ip: str) -> str | None:
        trusted = self._trusted_proxies
        return None if trusted and trusted_address(remote_ip, trusted) else remote_ip

    def _admit_socketio(self, request: HandshakeRequest) -> HttpResponse | Admission:
        """A Socket.IO upgrade: the same checks as :meth:`_admit`, except that no subprotocol is
        negotiated (Engine.IO is JSON text) and a missing token is left to the CONNECT's ``auth``."""
        query = self._sio.check_query(request.query, polling=self.polling is not None)
        if isinstance(query, HttpResponse):
            self.server.metrics.reject("socketio_query")
            return query
        if query.transport == "polling":  # the listener serves these itself; not as an upgrade
            self.server.metrics.reject("socketio_query")
            return HttpResponse(400, b'{"code":3,"message":"Bad request: polling is not an upgrade"}', "application/json")
        if query.sid is not None:
            return self._upgrade_polling(request, query.sid)
        return self._admit(request, socketio=True)

    def _upgrade_polling(self, request: HandshakeRequest, sid: str) -> HttpResponse | Admission:
        """A WebSocket taking over a long-polling session: the session was admitted already (caps,
        token); the Origin is checked again, and the sid must be one the server handed out."""
        s = self.settings
        if not self.polling.known(sid):
            self.server.metrics.reject("socketio_query")
            return self._sio.session_unknown()  # type: ignore[no-any-return]
        if not check_origin(request.header("Origin"), s.allowed_origins, allow_missing=s.allow_missing_origin):
            return self._refuse(403, "origin", "origin not allowed")
        return self._sio.UpgradeAdmission(  # type: ignore[no-any-return]
            Codec.JSON, None, ANONYMOUS, request.remote_ip, sessions=self.polling, sid=sid
        )

    def is_polling(self, path: str, query: str) -> bool:
        """Whether the listener should answer this request itself (Engine.IO long-polling)."""
        return self.polling is not None and path in self._socketio_paths and "transport=polling" in query

    async def polling_request(self, method: str, request: HandshakeRequest, body: bytes) -> HttpResponse:
        """One long-polling request (:meth:`is_polling` said so), answered by its session.

        A page on another allowed origin reads the answers through CORS: an allowed ``Origin`` is
        echoed (``Access-Control-Allow-Origin``, with credentials, so a cookie token works), and a
        preflight ``OPTIONS`` is answered; an origin not on the list gets no CORS header at all.
        """
        origin = request.header("Origin")
        cors: tuple[tuple[str, str], ...] = ()
        if origin is not None and check_origin(origin, self.settings.allowed_origins, allow_missing=False):
            cors = (
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Origin"),
            )
        if method == "OPTIONS":
            allow = (
                ("Access-Control-Allow-Methods", "GET, POST"),
                ("Access-Control-Allow-Headers", request.header("Access-Control-Request-Headers") or "content-type"),
            )
            return HttpResponse(204, b"", headers=cors + allow if cors else ())
        query = self._sio.check_query(request.query, polling=True)
        if isinstance(query, HttpResponse):
            self.server.metrics.reject("socketio_query")
            response: HttpResponse = query
        elif query.transport != "polling":
            response = HttpResponse(400, b'{"code":3,"message":"Bad request"}', "application/json")
        else:
            response = await self.polling.handle(method, request, query.sid, body)
        if cors:
            response = HttpResponse(response.status, response.body, response.content_type, response.headers + cors)
        return response

    def _admit(self, request: HandshakeRequest, *, socketio: bool = False) -> HttpResponse | Admission:
        s = self.settings
        ip = client_ip(request.remote_ip, request.header_values("X-Forwarded-For"), self._trusted_proxies)
        if self.server.shutting_down:
            return self._refuse(503, "shutting_down", "server is shutting down", (("Retry-After", "5"),))
        refusal = self.limiter.check(ip)
        if refusal is Refusal.TOTAL:
            return self._refuse(503, refusal.reason, "server is full, try later", (("Retry-After", "5"),))
        if refusal is Refusal.PER_IP:
            return self._refuse(429, refusal.reason, "too many connections from this address", (("Retry-After", "5"),))
        if not check_origin(request.header("Origin"), s.allowed_origins, allow_missing=s.allow_missing_origin):
            return self._refuse(403, "origin", "origin not allowed")
        offered = request.header_values("Sec-WebSocket-Protocol")
        choice = (Codec.JSON, None) if socketio else select_codec(offered, s.codecs)
        if choice is None:
            supported = ", ".join(c.subprotocol for c in s.codecs)
            return self._refuse(400, "subprotocol", f"unsupported subprotocol; offer one of: {supported}")
        codec, subprotocol = choice
        identity = ANONYMOUS
        authenticated = self.verifier is None
        if request.identity is not None and request.identity.authenticated:
            identity = request.identity  # the host app's own session said who this is
        elif self.verifier is not None:
            token = extract_token(
                sources=s.token_sources,
                authorization=request.header("Authorization"),
                subprotocols=offered,
                query=request.query,
                cookie_header=request.header("Cookie"),
                cookie_name=s.cookie_name,
            )
            if token is None and not socketio:
                return self._refuse(401, "missing_token", "missing token")
            if token is not None:
                try:
                    identity = self.verifier.verify(token, self.clock())
                except AuthError as exc:
                    return self._refuse(401, "invalid_token", exc.reason)
                authenticated = True
        if self.limiter.reserve(ip) is not None:  # checked above; no await in between
            return self._refuse(503, "server_full", "server is full, try later", (("Retry-After", "5"),))
        headers = request.headers if self.server.hooks is not None else ()
        release = lambda: self.limiter.release(ip)  # noqa: E731 - one expression, two uses
        if socketio:
            authenticated = authenticated or identity.authenticated
            return self._sio.SocketIOAdmission(  # type: ignore[no-any-return]
                codec, subprotocol, identity, ip, release, headers=headers, gate=self.socketio, authenticated=authenticated
            )
        return Admission(codec, subprotocol, identity, ip, release_slot=release, headers=headers)

    def _static(self, name: str) -> HttpResponse:
        root = self.settings.static_dir.resolve()
        try:
            path = (root / name).resolve()
            path.relative_to(root)
        except (ValueError, OSError):
            return HttpResponse(404, b"not found\n")
        if not path.is_file():
            return HttpResponse(404, b"not found\n")
        content_type = _CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type == "application/json":
            content_type += "; charset=utf-8"
        return HttpResponse(200, path.read_bytes(), content_type, (("Cache-Control", "no-cache"),))


def _socketio_package() -> Any:
    """``.socketio`` of this package when step 2 rendered Socket.IO (issue 24), else None."""
    package = __name__.rpartition(".")[0]
    try:
        return importlib.import_module(f"{package}.socketio")
    except ModuleNotFoundError as exc:
        if exc.name == f"{package}.socketio":
            return None
        raise
