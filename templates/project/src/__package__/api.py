"""The HTTP server API: how the application's backend publishes and manages users.

Browsers and devices talk WebSocket; the application that owns the data (a notification
service, a price feed, an admin tool) talks to this API instead, on its own listener
(``WS_API_HOST``/``WS_API_PORT``, loopback by default, so it is never exposed with the WebSocket
port by accident). ``openapi.yaml`` in the project root documents every call.

* Every call is ``POST /api/<method>`` with a JSON object body and a JSON answer: ``200
  {"result": {...}}`` or an HTTP error status with ``{"error": {"code", "message"}}``.
* Authentication: header ``X-API-Key`` against every key of ``WS_API_KEYS`` (comma-separated,
  so keys rotate without downtime), compared in constant time. No key configured: the API does
  not start (one log line says so); it is never open.
* Publishes go through the same broker, channel options (the namespace policy) and ``msg_id``
  deduplication as a client's publish, so subscribers on every instance get them with ``seq``.
  A broker that is down (or a circuit that is open) is ``503 broker_unavailable``: a ``200`` is
  only ever sent for a message the broker stored.
* User operations (``disconnect``, ``subscribe``, ``unsubscribe``) go to every instance as
  control messages (``control.py``); ``channels`` asks every live instance for its counts.

:class:`ApiServer` is the aiohttp glue; the methods validate their parameters and raise
:class:`ApiError`, which becomes the error answer.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from .broker import BrokerUnavailable, ChannelLimitReached
from .channels import InvalidChannel, NamespacePolicy, parse_channel
from .control import CONTROL_CHANNEL, ControlOp, DisconnectUser, SubscribeUser, UnsubscribeUser, encode
from .protocol import MAX_MSG_ID_LENGTH, check_payload, publish_limit
from .settings import ENV_VARS, SettingsError

if TYPE_CHECKING:
    from .server import Server

logger = logging.getLogger(__name__)

API_KEY_HEADER: Final = "X-API-Key"
MAX_HISTORY_LIMIT: Final = 1000
MAX_USER_LENGTH: Final = 256


class ApiError(Exception):
    """A call that fails with HTTP ``status`` and ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _unavailable(exc: BaseException) -> ApiError:
    logger.warning("server API: broker unavailable: %s", exc)
    return ApiError(503, "broker_unavailable", "message broker unavailable, nothing was done; retry later")


Method = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ApiServer:
    """The API's listener and its methods, bound to one :class:`~.server.Server`."""

    def __init__(self, server: Server) -> None:
        settings = server.settings
        self.server = server
        self.keys = tuple(key.encode() for key in settings.api_keys)
        self.max_body = settings.api_max_body_bytes
        self.max_batch = settings.api_max_batch
        self.max_publish = publish_limit(settings.max_payload_bytes)
        self.host = settings.api_host
        self.port = settings.api_port
        self.methods: dict[str, Method] = {
            "publish": self.publish,
            "broadcast": self.broadcast,
            "presence": self.presence,
            "presence_stats": self.presence_stats,
            "history": self.history,
            "disconnect": self.disconnect,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
            "channels": self.channels,
            "batch": self.batch,
        }
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``api_host:api_port``; ``self.port`` is then the bound port."""
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=self.server.settings.shutdown_grace_s
        )
        await runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            # Every worker (workers.py) listens on the API port too: any of them answers a call.
            reuse_port = self.server.settings.workers > 1
            sock = socket.create_server((self.host, self.port), family=family, reuse_port=reuse_port)
        except OSError as exc:
            await runner.cleanup()
            where, why = f"{self.host}:{self.port}", os.strerror(exc.errno or 0) if exc.errno else str(exc)
            raise SettingsError(f"cannot listen on {where} for the server API: {why} (WS_API_HOST / WS_API_PORT choose another)") from None
        self.host, self.port = sock.getsockname()[:2]
        await web.SockSite(runner, sock).start()
        logger.info(
            "server API listening on http://%s:%d/api/ (%d key(s))",
            self.host,
            self.port,
            len(self.keys),
            extra={"event": "api_listening", "host": self.host, "port": self.port},
        )

    async def stop(self) -> None:
        """Close the listener; calls in progress finish (bounded by the shutdown grace)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- HTTP ---------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return _json(200, {"result": await self._handle(request)})
        except ApiError as exc:
            headers = {"Allow": "POST"} if exc.status == 405 else None
            return _json(exc.status, exc.body(), headers)
        except Exception:
            logger.exception("server API call %s failed", request.path)
            return _json(500, ApiError(500, "internal", "internal error").body())

    async def _handle(self, request: web.Request) -> dict[str, Any]:
        path = request.path
        if not path.startswith("/api/"):
            raise ApiError(404, "not_found", "no such endpoint; calls are POST /api/<method>")
        if request.method != "POST":
            raise ApiError(405, "method_not_allowed", "calls are POST /api/<method>")
        if not self.authorized(request.headers.get(API_KEY_HEADER)):
            raise ApiError(401, "unauthorized", f"missing or wrong {API_KEY_HEADER} header")
        method = self.methods.get(path[len("/api/") :])
        if method is None:
            raise ApiError(404, "not_found", f"unknown method {path[len('/api/') :][:64]!r}")
        if self.server.shutting_down:
            raise ApiError(503, "shutting_down", "server is shutting down; retry on another instance")
        if request.content_length is not None and request.content_length > self.max_body:
            raise ApiError(413, "payload_too_large", f"body larger than {self.max_body} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise ApiError(413, "payload_too_large", f"body larger than {self.max_body} bytes") from exc
        try:
            params = orjson.loads(body) if body else None
        except orjson.JSONDecodeError as exc:
            raise _bad(f"body is not valid JSON: {exc}"[:200]) from exc
        if not isinstance(params, dict):
            raise _bad("body must be a JSON object")
        return await method(params)

    def authorized(self, given: str | None) -> bool:
        """Constant-time comparison against every configured key (no early exit on a match)."""
        if not given or not self.keys:
            return False
        candidate = given.encode()
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(key, candidate)
        return matched

    # -- parameters ---------------------------------------------------------------------------

    def _channel(self, params: dict[str, Any], name: str = "channel") -> tuple[str, NamespacePolicy]:
        value = params.get(name)
        if not isinstance(value, str):
            raise _bad(f"'{name}' must be a string")
        return self.parse_channel(value)

    def parse_channel(self, value: str) -> tuple[str, NamespacePolicy]:
        """Validate a channel name as a client's would be; raises ``invalid_channel`` or ``unknown_namespace``."""
        settings, namespaces = self.server.settings, self.server.dispatcher.namespaces
        try:
            parsed, policy = parse_channel(
                value, namespaces, separator=settings.channel_separator, max_length=settings.max_channel_name
            )
        except InvalidChannel as exc:
            namespace, sep, rest = value.partition(settings.channel_separator)
            unknown = bool(sep and namespace and rest) and namespace not in namespaces
            raise ApiError(400, "unknown_namespace" if unknown else "invalid_channel", str(exc)) from exc
        return parsed.full, policy

    def _data(self, params: dict[str, Any]) -> Any:
        if "data" not in params:
            raise _bad("'data' is required")
        data = params["data"]
        if not check_payload(data):
            raise _bad("'data' must be JSON data of limited depth with 64-bit integers")
        size = len(orjson.dumps(data))
        if size > self.max_publish:
            message = f"data of {size} bytes; subscribers accept at most {self.max_publish} (WS_MAX_PAYLOAD_BYTES)"
            raise ApiError(413, "payload_too_large", message)
        return data

    @staticmethod
    def _msg_id(params: dict[str, Any]) -> str | None:
        msg_id = params.get("msg_id")
        if msg_id is not None and not (isinstance(msg_id, str) and 0 < len(msg_id) <= MAX_MSG_ID_LENGTH):
            raise _bad(f"'msg_id' must be a string of 1..{MAX_MSG_ID_LENGTH} characters")
        return msg_id

    @staticmethod
    def _user(params: dict[str, Any]) -> str:
        user = params.get("user")
        if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_LENGTH:
            raise _bad(f"'user' must be a string of 1..{MAX_USER_LENGTH} characters")
        return user

    @staticmethod
    def _int(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
        value = params.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _bad(f"'{name}' must be an integer in {low}..{high}")
        return value

    # -- methods ------------------------------------------------------------------------------

    async def publish(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, policy = self._channel(params)
        return await self._publish(channel, policy, self._data(params), self._msg_id(params))

    async def _publish(self, channel: str, policy: NamespacePolicy, data: Any, msg_id: str | None) -> dict[str, Any]:
        try:
            result = await self.server.broker.publish(channel, data, policy.options, sender=None, msg_id=msg_id)
        except ChannelLimitReached as exc:
            raise ApiError(429, "too_many_channels", str(exc)) from exc
        except BrokerUnavailable as exc:
            raise _unavailable(exc) from exc
        message = result.message
        return {"seq": message.seq, "epoch": message.epoch or "", "duplicate": result.duplicate}

    async def broadcast(self, params: dict[str, Any]) -> dict[str, Any]:
        channels = params.get("channels")
        if not isinstance(channels, list) or not 0 < len(channels) <= self.max_batch:
            raise _bad(f"'channels' must be a list of 1..{self.max_batch} channel names")
        data, msg_id = self._data(params), self._msg_id(params)

        async def one(name: Any) -> dict[str, Any]:
            try:
                if not isinstance(name, str):
                    raise ApiError(400, "invalid_channel", "channel must be a string")
                channel, policy = self.parse_channel(name)
                return {"channel": name, "result": await self._publish(channel, policy, data, msg_id)}
            except ApiError as exc:
                return {"channel": name, **exc.body()}

        return {"responses": list(await asyncio.gather(*(one(name) for name in channels)))}

    async def _members(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        channel, policy = self._channel(params)
        if not policy.presence:
            raise _bad(f"presence is off for namespace {policy.name!r}")
        try:
            members = await self.server.broker.presence_members(channel)
        except BrokerUnavailable as exc:
            raise _unavailable(exc) from exc
        return [{"user": m.user, "connections": m.connections} for m in members]

    async def presence(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"members": await self._members(params)}

    async def presence_stats(self, params: dict[str, Any]) -> dict[str, Any]:
        members = await self._members(params)
        return {"users": len(members), "connections": sum(m["connections"] for m in members)}

    async def history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, policy = self._channel(params)
        if not policy.history_enabled:
            raise _bad(f"namespace {policy.name!r} keeps no history")
        since_seq = self._int(params, "since_seq", 0, 0, 2**63 - 1)
        limit = self._int(params, "limit", 100, 1, MAX_HISTORY_LIMIT)
        epoch, reverse = params.get("epoch"), params.get("reverse", False)
        if epoch is not None and not isinstance(epoch, str):
            raise _bad("'epoch' must be a string")
        if not isinstance(reverse, bool):
            raise _bad("'reverse' must be a boolean")
        broker, options = self.server.broker, policy.options
        try:
            found = await broker.history(channel, since_seq, options, limit=limit)
            recovered = found.recovered
            if epoch is not None and epoch != found.epoch:
                # Positions of another epoch mean nothing here: everything kept, from the start.
                since_seq, recovered = 0, False
                found = await broker.history(channel, 0, options, limit=limit)
            if reverse and found.last_seq - since_seq > limit:
                # The newest ``limit`` messages, not the oldest ones after since_seq.
                found = await broker.history(channel, found.last_seq - limit, options, limit=limit)
        except BrokerUnavailable as exc:
            raise _unavailable(exc) from exc
        messages = [{"seq": m.seq, "ts": m.ts, "data": m.payload, "sender": m.sender} for m in found.messages]
        if reverse:
            messages.reverse()
        return {"messages": messages, "epoch": found.epoch, "last_seq": found.last_seq, "recovered": recovered}

    async def _control(self, op: ControlOp) -> dict[str, Any]:
        try:
            await self.server.broker.announce(CONTROL_CHANNEL, encode(op))
        except BrokerUnavailable as exc:
            raise _unavailable(exc) from exc
        return {}

    async def disconnect(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._user(params)
        code = self._int(params, "code", 4000, 4000, 4999)
        reason = params.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 120:
            raise _bad("'reason' must be a string of at most 120 characters")
        return await self._control(DisconnectUser(user, code, reason))

    async def subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        user, (channel, _) = self._user(params), self._channel(params)
        return await self._control(SubscribeUser(user, channel))

    async def unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        user, (channel, _) = self._user(params), self._channel(params)
        return await self._control(UnsubscribeUser(user, channel))

    async def channels(self, params: dict[str, Any]) -> dict[str, Any]:
        pattern = params.get("pattern")
        if pattern is not None and not (isinstance(pattern, str) and 0 < len(pattern) <= 256):
            raise _bad("'pattern' must be a glob of 1..256 characters, e.g. 'room:*'")
        try:
            counts = await self.server.control.channels(pattern)
        except BrokerUnavailable as exc:
            raise _unavailable(exc) from exc
        return {"channels": {name: {"subscribers": n} for name, n in sorted(counts.items())}}

    async def batch(self, params: dict[str, Any]) -> dict[str, Any]:
        commands = params.get("commands")
        if not isinstance(commands, list) or not 0 < len(commands) <= self.max_batch:
            raise _bad(f"'commands' must be a list of 1..{self.max_batch} commands")
        replies: list[dict[str, Any]] = []
        for command in commands:  # in order: a publish then a history of the same channel sees it
            try:
                replies.append({"result": await self._command(command)})
            except ApiError as exc:
                replies.append(exc.body())
        return {"replies": replies}

    async def _command(self, command: Any) -> dict[str, Any]:
        if not isinstance(command, dict):
            raise _bad("a command must be an object {method, params}")
        name, params = command.get("method"), command.get("params", {})
        if name == "batch":
            raise _bad("batch calls cannot be nested")
        method = self.methods.get(name) if isinstance(name, str) else None
        if method is None:
            raise ApiError(404, "not_found", f"unknown method {str(name)[:64]!r}")
        if not isinstance(params, dict):
            raise _bad("'params' must be an object")
        return await method(params)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


async def start_api(server: Server) -> ApiServer | None:
    """Start the API for ``server`` (called by :meth:`~.server.Server.start`); None when no key is set."""
    if not server.settings.api_keys:
        variable = next(name for name, (attr, _, _) in ENV_VARS.items() if attr == "api_keys")
        logger.warning(
            "server API off: %s is empty (set one or more comma-separated keys to turn it on)",
            variable,
            extra={"event": "api_off"},
        )
        return None
    api = ApiServer(server)
    await api.start()
    return api
