"""The WebSocket endpoint mounted inside the team's ASGI app (FastAPI, Starlette, any ASGI router).

The same :class:`~.server.Server` as ``python -m`` (dispatch, channels, limits, broker, control
plane and server API) runs behind the host app's ASGI server instead of its own listener
(``transport/asgi.py``). :class:`Realtime` is an ASGI app; mount it and run it in the host's
lifespan::

    realtime = Realtime(authenticate=current_user_of_scope)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with realtime.lifespan():
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/realtime", realtime)      # ws://host/realtime/ws, /realtime/healthz, /readyz, /metrics

    @app.post("/notes")
    async def add_note(...):
        await realtime.publish("doc:42", {"op": "insert", ...})   # in process, same seq/history/dedupe

Below the mount, ``settings.path`` (``WS_PATH``) is the WebSocket endpoint and ``/healthz``,
``/readyz``, ``/metrics`` answer HTTP through the same front door as standalone; anything else is
404 (the host app serves its own pages). Projects that serve Socket.IO clients also answer at
``settings.socketio_path`` (``WS_SOCKETIO_PATH``) below the mount: WebSocket and HTTP
long-polling with its upgrade, as standalone (``transport/asgi.py``); a client connects with
``io("https://host", {path: "/realtime/socket.io/"})``.

**Authentication.** ``authenticate(scope)`` is the host app's own check (its session cookie, the
function behind its FastAPI dependency). An :class:`~.auth.Identity` with a ``user`` admits the
handshake as that user, still subject to the Origin allowlist, the connection caps and the
subprotocol; None leaves the decision to the JWT, as standalone (401 without a valid one when auth
is on). The hook runs once per upgrade, before the front door, on the event loop: keep it async
and quick (a session lookup, not a remote call without a timeout).

**Processes.** Each ASGI worker process (``uvicorn --workers N``, gunicorn's uvicorn workers)
imports the app and runs its own Server: they share channels, history and presence only through
the broker, like the instances of a standalone deployment. Set ``WS_WORKERS`` to the number of
worker processes: more than one on ``memory://`` is refused at startup (the in-memory broker
lives in one process), and the server API listener (``WS_API_PORT``, on when ``WS_API_KEYS`` is
set) is then shared by every worker with ``SO_REUSEPORT`` instead of failing to bind in all but
one. A process that looks like a spawned worker on ``memory://`` logs a warning.

**Shutdown.** uvicorn closes every open WebSocket with 1012 *before* it runs the lifespan's
shutdown, so the lifespan alone cannot send 1001. :meth:`Realtime.lifespan` therefore wraps the
process's SIGTERM/SIGINT handler (when one is installed in Python, as uvicorn and gunicorn do):
the first signal drains (``/readyz`` 503 for ``WS_SHUTDOWN_DRAIN_S``), closes every connection
with 1001 within ``WS_SHUTDOWN_GRACE_S`` and releases the broker, then hands the signal to the
ASGI server, which stops as usual. The handlers are restored when the lifespan ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import signal
import threading
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import orjson

from .broker import PublishResult
from .channels import parse_channel
from .protocol import check_payload, publish_limit
from .server import Server
from .settings import ENV_VARS, Settings, SettingsError
from .transport import HttpResponse
from .transport.asgi import (
    AsgiTransport,
    Authenticate,
    Receive,
    Scope,
    Send,
    handshake_request,
    refuse,
    respond,
    transport_of,
)

__all__ = ["Authenticate", "Realtime", "Scope", "create_realtime"]

logger = logging.getLogger(__name__)

HTTP_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
"""What the mount answers over HTTP; the host app serves everything else."""

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Realtime:
    """The WebSocket endpoint as an ASGI app, with its :class:`~.server.Server`.

    Args:
        settings: defaults to :meth:`Settings.from_env`; ``transport`` is always ``"asgi"``.
            With auth on, the JWT key is required as standalone (``SettingsError`` otherwise).
        authenticate: the host app's own authentication, see :data:`Authenticate`.
        handle_signals: wrap the process's SIGTERM/SIGINT handler for a 1001 drain before the ASGI
            server closes the sockets (see the module docstring); off for tests or hosts that call
            :meth:`shutdown` themselves.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        authenticate: Authenticate | None = None,
        handle_signals: bool = True,
    ) -> None:
        settings = settings if settings is not None else Settings.from_env()
        self.settings = dataclasses.replace(settings, transport="asgi")
        if self.settings.auth_enabled and not self.settings.jwt_key:
            # Checked here, at the host app's import, not at its first upgrade: the JWT path stays
            # open beside the host's own sessions (clients without one present a token).
            variable = next(name for name, (attr, _, _) in ENV_VARS.items() if attr == "jwt_key")
            raise SettingsError(f"JWT auth is on but no key is set; set {variable} (or WS_AUTH_MODE=none)")
        self.server = Server(self.settings)
        self.authenticate = authenticate
        self.handle_signals = handle_signals
        self._transport: AsgiTransport | None = None
        self._drain_task: asyncio.Task[None] | None = None
        """The drain a signal started (a reference, so the task is not collected mid-way)."""
        self._namespaces = {ns.name: ns for ns in self.settings.namespaces}
        self._max_publish = publish_limit(self.settings.max_payload_bytes)
        socketio_path: str | None = getattr(self.settings, "socketio_path", None)
        self._socketio_paths = frozenset({socketio_path, socketio_path.rstrip("/") or "/"} if socketio_path else ())
        """Where Socket.IO clients connect below the mount (``socketio/``; empty without it)."""

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            transport = self._transport
            if transport is None:
                logger.error("WebSocket refused: the Realtime lifespan is not running (enter realtime.lifespan() in the host app's lifespan)")
                await refuse(scope, send, HttpResponse(503, b"server not started\n", headers=(("Retry-After", "5"),)))
                return
            await transport.handle(scope, receive, send, self.authenticate)
        elif kind == "http":
            if handshake_request(scope).path in self._socketio_paths:
                await self._polling(scope, receive, send)
            else:
                await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan_protocol(receive, send)

    @property
    def socketio_paths(self) -> frozenset[str]:
        """The Socket.IO path below the mount, with and without its trailing slash (empty when the
        project serves no Socket.IO clients)."""
        return self._socketio_paths

    async def _polling(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Socket.IO's Engine.IO long-polling, answered by the server's sessions (``transport/asgi.py``)."""
        transport = self._transport
        if transport is None:
            await respond(send, HttpResponse(503, b"server not started\n", headers=(("Retry-After", "5"),)))
            return
        await transport.handle_polling(scope, receive, send, self.authenticate)

    async def _http(self, scope: Scope, send: Send) -> None:
        request = handshake_request(scope)
        if request.path not in HTTP_ROUTES:
            response = HttpResponse(404, b"not found\n")
        elif scope.get("method", "GET") not in ("GET", "HEAD"):
            response = HttpResponse(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
        else:
            answer = self.server.handshake(request)
            assert isinstance(answer, HttpResponse)  # only settings.path is ever admitted
            response = answer
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers),
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        body = b"" if scope.get("method") == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    async def _lifespan_protocol(self, receive: Receive, send: Send) -> None:
        """Run as the top-level app (``uvicorn pkg.asgi:app``): the ASGI lifespan protocol drives
        :meth:`lifespan`. Mounted under a router, the host's lifespan enters it instead."""
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self.lifespan())
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            while (await receive())["type"] != "lifespan.shutdown":
                pass
        await send({"type": "lifespan.shutdown.complete"})

    # -- lifecycle -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Start the Server (broker, control plane, server API) for the host app's lifetime.

        Raises:
            SettingsError: unusable settings (more than one worker on ``memory://``; an API port
                in use).
        """
        self._check_settings()
        from .__main__ import raise_open_files_limit

        raise_open_files_limit(self.settings)
        await self.server.start()
        self._transport = transport_of(self.server)
        restore = self._wrap_signals() if self.handle_signals else None
        try:
            yield
        finally:
            if restore is not None:
                restore()
            await self.server.stop()
            self._transport = None

    async def shutdown(self) -> None:
        """Drain and close every connection with 1001, then release the broker; idempotent."""
        await self.server.stop()

    def _check_settings(self) -> None:
        s = self.settings
        memory = s.broker_url.startswith("memory://")
        if memory and s.workers > 1:
            raise SettingsError(
                f"WS_WORKERS={s.workers} on memory://: each worker process would have its own channels; "
                "set WS_BROKER_URL to a redis:// or nats:// broker, or run one worker"
            )
        if memory and multiprocessing.parent_process() is not None:
            logger.warning(
                "this process was started by another Python process (uvicorn --workers or --reload?): if it "
                "is one of several workers, the in-memory broker does not span them and clients on other "
                "workers see none of these channels; set WS_BROKER_URL to Redis or NATS and WS_WORKERS",
                extra={"event": "memory_broker_in_worker"},
            )

    def _wrap_signals(self) -> Callable[[], None] | None:
        """Put :meth:`_on_signal` in front of the ASGI server's SIGTERM/SIGINT handlers; returns
        the undo. Only Python-level handlers are wrapped (uvicorn, gunicorn workers): a loop's
        ``add_signal_handler`` or the default handler are left alone, and the lifespan's end then
        closes with 1001 whatever the ASGI server left open."""
        if threading.current_thread() is not threading.main_thread():
            return None
        loop = asyncio.get_running_loop()
        previous: dict[int, Any] = {}
        for signum in _SIGNALS:
            handler = signal.getsignal(signum)
            if not callable(handler) or handler is signal.default_int_handler:
                continue
            if getattr(handler, "__name__", "") == "_sighandler_noop":  # asyncio's add_signal_handler
                continue
            previous[signum] = handler

            def relay(signum: int, frame: FrameType | None, handler: Any = handler) -> None:
                loop.call_soon_threadsafe(self._on_signal, signum, frame, handler)

            signal.signal(signum, relay)

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore

    def _on_signal(self, signum: int, frame: FrameType | None, handler: Callable[[int, FrameType | None], Any]) -> None:
        if self.server.shutting_down:  # a second signal: the ASGI server's own meaning (force quit)
            handler(signum, frame)
            return
        logger.info("signal %s: closing WebSockets with 1001 before the ASGI server stops", signum)

        async def drain_then_pass_on() -> None:
            try:
                await self.server.stop()
            finally:
                handler(signum, frame)

        self._drain_task = asyncio.get_running_loop().create_task(drain_then_pass_on())

    # -- publishing from the host app ----------------------------------------------------------

    async def publish(self, channel: str, payload: Any, *, msg_id: str | None = None) -> PublishResult:
        """Publish ``payload`` to ``channel`` from the host app, in process: the same broker, channel
        options, ``seq``, history and ``msg_id`` deduplication as a client's or the server API's
        publish; subscribers on every instance get it. ``sender`` is None (the backend).

        Raises:
            InvalidChannel: malformed channel name or unknown namespace.
            ValueError: ``payload`` is not JSON data or is larger than a publish may be.
            BrokerUnavailable: the broker did not take it (down, circuit open, shutting down);
                nothing was stored or delivered: retry with the same ``msg_id``.
            RuntimeError: the lifespan is not running.
        """
        if self._transport is None:
            raise RuntimeError("Realtime.publish before its lifespan started (enter realtime.lifespan())")
        s = self.settings
        _, policy = parse_channel(channel, self._namespaces, separator=s.channel_separator, max_length=s.max_channel_name)
        if not check_payload(payload):
            raise ValueError("payload must be JSON data (str keys, 64-bit integers, nested at most 64 deep)")
        if len(orjson.dumps(payload)) > self._max_publish:
            raise ValueError(f"payload is larger than a publish may be ({self._max_publish} bytes encoded)")
        return await self.server.broker.publish(channel, payload, policy.options, sender=None, msg_id=msg_id)


def create_realtime(
    settings: Settings | None = None, *, authenticate: Authenticate | None = None, handle_signals: bool = True
) -> Realtime:
    """A :class:`Realtime` configured from ``WS_*`` (or ``settings``); mount it and enter its lifespan."""
    return Realtime(settings, authenticate=authenticate, handle_signals=handle_signals)
