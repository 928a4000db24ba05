"""Event hooks to the application: the server asks the app's backend over HTTP (Centrifugo's proxies).

Each hook is one ``POST`` of a JSON object to the URL in ``WS_HOOK_<NAME>_URL``, answered with a
JSON object (HTTP 200). Only the hooks the spec enables are rendered into ``settings.py``; an
enabled hook without its URL stops the server at startup with an error naming the variable.

=========== ================================================== ===========================================
hook        request                                            answer
=========== ================================================== ===========================================
connect     ``{"event": "connect", "conn_id", "user", "ip",    ``{"result": {"info"?: {..}, "channels"?:
            "subprotocol", "headers": {name: value}}``          [..]}}`` or ``{"disconnect": {"code":
                                                               4000-4999, "reason"}}``
subscribe   ``{"event": "subscribe", "conn_id", "user",        ``{"result": {}}`` or ``{"error":
            "channel", "info"}``                               {"message"}}``
publish     ``{"event": "publish", "conn_id", "user",          ``{"result": {}}``, ``{"result": {"data":
            "channel", "data", "msg_id", "info"}``             ..}}`` (broadcast and store this instead)
                                                               or ``{"error": {"message"}}``
disconnect  ``{"event": "disconnect", "conn_id", "user",       ignored
            "code", "reason", "info"}``
=========== ================================================== ===========================================

``user`` is the verified JWT ``sub`` (``null`` for anonymous connections); ``info`` is what the
connect hook attached (``null`` without one). ``headers`` carries only :data:`FORWARDED_HEADERS`,
never ``Authorization`` or ``Cookie``. ``channels`` are grants: this connection may subscribe to
them (and read their presence and history) whatever the namespace policy says, without asking
the subscribe hook. The subscribe hook is asked only for namespaces whose ``auth`` is ``hook``:
the other policies are static and decided by the server alone.

Failure policy. A hook *fails* when it times out (``WS_HOOK_<NAME>_TIMEOUT_S``), its circuit is
open, the app cannot be reached, answers a status other than 200, or answers something that is
not such an object. connect, subscribe and publish fail closed: the connection is closed with
1013 (try again later), the subscribe or publish is answered ``internal`` (clients retry those
with backoff) and nothing is broadcast. disconnect is fire and forget: it never delays cleanup,
at most ``hook_disconnect_max_in_flight`` are sent at once and the rest are dropped (logged).

Each hook has its own circuit breaker (:class:`~.broker.breaker.CircuitBreaker`):
``WS_HOOK_FAILURE_THRESHOLD`` consecutive failures open it, calls then fail at once without
reaching the app, and after ``WS_HOOK_RESET_TIMEOUT_S`` one probe call decides whether it closes.
An answer that arrived but breaks the rules above (an ``info`` over :data:`MAX_INFO_BYTES`, a
bad grant, a rewrite that is not JSON data) fails closed too, without counting as an outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

from .broker.breaker import CircuitBreaker, CircuitState
from .channels import InvalidChannel, parse_channel
from .dispatch import Effect, Publish, Session, Subscribe
from .protocol import CloseCode, ErrorCode, check_payload, publish_limit
from .settings import Settings, SettingsError
from .transport import Admission

logger = logging.getLogger(__name__)

FORWARDED_HEADERS: Final = ("user-agent", "origin", "accept-language", "referer", "x-request-id")
"""Handshake headers the connect hook sees; credentials (Authorization, Cookie) never leave."""
MAX_INFO_BYTES: Final = 4096
"""Largest ``info`` (encoded as JSON) a connect hook may attach to a connection."""
MAX_ANSWER_BYTES: Final = 1 << 20
"""A hook answer longer than this is a failure (a publish rewrite is also held to the publish limit)."""
HOOK_UNAVAILABLE: Final = "application hook unavailable, retry later"


class HookFailed(Exception):
    """No usable answer from the app (see the module docstring's failure policy)."""


@dataclass(slots=True)
class HookStats:
    """Counters per hook, for logs and tests."""

    calls: int = 0
    failures: int = 0
    short_circuited: int = 0
    """Calls refused at once because the circuit was open."""
    dropped: int = 0
    """Disconnect notifications not sent because too many were in flight."""


class Hooks:
    """The enabled hooks of one server: one aiohttp session, one breaker per hook.

    Raises:
        SettingsError: an enabled hook has no URL (names the variable).
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.targets = dict(settings.hook_targets)
        for name, (url, _) in self.targets.items():
            if not url:
                variable = f"WS_HOOK_{name.upper()}_URL"
                raise SettingsError(f"the {name} hook is enabled but {variable} is not set (the app's URL for it)")
        self.breakers = {
            name: CircuitBreaker(settings.hook_failure_threshold, settings.hook_reset_timeout_s) for name in self.targets
        }
        self.stats = {name: HookStats() for name in self.targets}
        self.connect_enabled = "connect" in self.targets
        self.publish_enabled = "publish" in self.targets
        self._clock = clock
        self._max_in_flight: int = getattr(settings, "hook_disconnect_max_in_flight", 0)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"Content-Type": "application/json"})

    async def aclose(self) -> None:
        """Let disconnect notifications in flight finish (within one hook timeout), then close
        the HTTP session."""
        if self._in_flight:
            _, late = await asyncio.wait(set(self._in_flight), timeout=self.targets["disconnect"][1])
            for task in late:
                task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def state(self, name: str) -> CircuitState:
        return self.breakers[name].state

    # -- the hooks ---------------------------------------------------------------------------

    async def connect(self, session: Session, admission: Admission) -> tuple[int, str] | None:
        """Ask whether the connection may stay. None: yes (``session.info`` and ``session.grants``
        set from the answer); else the close code and reason to close it with."""
        if not self.connect_enabled:
            return None
        headers = {k.lower(): v for k, v in admission.headers if k.lower() in FORWARDED_HEADERS}
        body = {
            "event": "connect",
            "conn_id": session.conn_id,
            "user": session.identity.user,
            "ip": admission.remote_ip,
            "subprotocol": admission.subprotocol,
            "headers": headers,
        }
        try:
            answer = await self._call("connect", body)
            refusal = answer.get("disconnect")
            if refusal is not None:
                return _refusal(refusal)
            result = answer.get("result")
            if not isinstance(result, dict):
                raise HookFailed("answer has neither 'result' nor 'disconnect'")
            session.info = self._info(result.get("info"))
            session.grants = self._grants(result.get("channels"))
        except HookFailed as exc:
            logger.warning("connect hook failed for %s: %s", session.conn_id, exc, extra={"event": "hook_failed"})
            return CloseCode.TRY_AGAIN_LATER, "connect hook unavailable"
        return None

    async def subscribe(self, session: Session, cmd: Subscribe) -> list[Effect] | None:
        """Ask whether ``cmd`` (a subscribe to a ``hook`` namespace) may go on. None: yes; else
        the error answer (``forbidden`` when refused, ``internal`` when the hook failed)."""
        if "subscribe" not in self.targets:  # WS_HOOKS left it out: nobody may decide, so no
            return session.failed(cmd, ErrorCode.FORBIDDEN, "the subscribe hook is not enabled")
        body = {
            "event": "subscribe",
            "conn_id": session.conn_id,
            "user": session.identity.user,
            "channel": cmd.channel,
            "info": session.info,
        }
        try:
            answer = await self._call("subscribe", body)
            if isinstance(answer.get("result"), dict):
                return None
            return session.failed(cmd, ErrorCode.FORBIDDEN, _refused_message(answer))
        except HookFailed as exc:
            logger.warning("subscribe hook failed for %s: %s", cmd.channel, exc, extra={"event": "hook_failed"})
            return session.failed(cmd, ErrorCode.INTERNAL, HOOK_UNAVAILABLE)

    async def publish(self, session: Session, cmd: Publish) -> Publish | list[Effect]:
        """Ask the app about a client publish: the command to carry out (its payload rewritten
        when the app said so) or the error answer; nothing is broadcast then."""
        body = {
            "event": "publish",
            "conn_id": session.conn_id,
            "user": session.identity.user,
            "channel": cmd.channel,
            "data": cmd.payload,
            "msg_id": cmd.msg_id,
            "info": session.info,
        }
        try:
            answer = await self._call("publish", body)
            result = answer.get("result")
            if not isinstance(result, dict):
                return session.failed(cmd, ErrorCode.FORBIDDEN, _refused_message(answer))
            if "data" not in result:
                return cmd
            data = result["data"]
            if not check_payload(data):
                raise HookFailed("rewritten data is not JSON data")
            if len(orjson.dumps(data)) > publish_limit(self.settings.max_payload_bytes):
                raise HookFailed("rewritten data is larger than a publish may be")
            return Publish(cmd.id, cmd.action, cmd.channel, cmd.policy, data, cmd.msg_id)
        except HookFailed as exc:
            logger.warning("publish hook failed for %s: %s", cmd.channel, exc, extra={"event": "hook_failed"})
            return session.failed(cmd, ErrorCode.INTERNAL, HOOK_UNAVAILABLE)

    def disconnected(self, session: Session, code: int, reason: str) -> None:
        """Tell the app a connection ended; returns at once (the POST runs in its own task)."""
        if "disconnect" not in self.targets:
            return
        if len(self._in_flight) >= self._max_in_flight:
            self.stats["disconnect"].dropped += 1
            logger.warning("disconnect hook: %d notifications in flight, dropped %s", len(self._in_flight), session.conn_id)
            return
        body = {
            "event": "disconnect",
            "conn_id": session.conn_id,
            "user": session.identity.user,
            "code": code,
            "reason": reason,
            "info": session.info,
        }
        task = asyncio.get_running_loop().create_task(self._notify(body))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _notify(self, body: dict[str, Any]) -> None:
        try:
            await self._call("disconnect", body)
        except HookFailed as exc:
            logger.info("disconnect hook failed for %s: %s", body["conn_id"], exc, extra={"event": "hook_failed"})

    # -- transport ---------------------------------------------------------------------------

    async def _call(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to hook ``name``; the answer object. Outages count in its breaker.

        Raises:
            HookFailed: timeout, open circuit, unreachable, non-200 status, not a JSON object.
        """
        breaker, stats = self.breakers[name], self.stats[name]
        if not breaker.allow(self._clock()):
            stats.short_circuited += 1
            raise HookFailed(f"{name} hook circuit is open")
        session = self._session
        if session is None:
            raise HookFailed("hooks are not started")
        url, timeout_s = self.targets[name]
        stats.calls += 1
        try:
            # A task of its own: the server may have started this call inside a transport's data
            # callback (picows, Server.apply_now), where asyncio.timeout and aiohttp's timers find
            # no current task. Awaiting the task suspends the caller like any other await.
            raw = await asyncio.get_running_loop().create_task(_post(session, url, timeout_s, body))
            answer = orjson.loads(raw)
            if not isinstance(answer, dict):
                raise HookFailed("answer is not a JSON object")
        except HookFailed:
            self._failed(name)
            raise
        except TimeoutError:
            self._failed(name)
            raise HookFailed(f"no answer within {timeout_s:g} s") from None
        except (aiohttp.ClientError, orjson.JSONDecodeError, OSError) as exc:
            self._failed(name)
            raise HookFailed(f"{type(exc).__name__}: {exc}"[:200]) from None
        if breaker.record_success():
            logger.info("%s hook circuit closed", name, extra={"event": "hook_circuit_closed", "hook": name})
        return answer

    def _failed(self, name: str) -> None:
        breaker = self.breakers[name]
        was_open = breaker.state is CircuitState.OPEN
        breaker.record_failure(self._clock())
        self.stats[name].failures += 1
        if breaker.state is CircuitState.OPEN and not was_open:
            logger.warning("%s hook circuit opened", name, extra={"event": "hook_circuit_open", "hook": name})

    # -- answers -----------------------------------------------------------------------------

    def _info(self, info: Any) -> dict[str, Any] | None:
        if info is None:
            return None
        if not isinstance(info, dict) or not check_payload(info):
            raise HookFailed("'info' must be a JSON object")
        if len(orjson.dumps(info)) > MAX_INFO_BYTES:
            raise HookFailed(f"'info' is larger than {MAX_INFO_BYTES} bytes")
        return info

    def _grants(self, channels: Any) -> frozenset[str]:
        if channels is None:
            return frozenset()
        settings = self.settings
        if not isinstance(channels, list) or len(channels) > settings.max_subscriptions_per_connection:
            raise HookFailed(f"'channels' must be a list of at most {settings.max_subscriptions_per_connection}")
        namespaces = {ns.name: ns for ns in settings.namespaces}
        for channel in channels:
            if not isinstance(channel, str):
                raise HookFailed("'channels' must hold channel names")
            try:
                parse_channel(
                    channel, namespaces, separator=settings.channel_separator, max_length=settings.max_channel_name
                )
            except InvalidChannel as exc:
                raise HookFailed(f"granted channel {channel[:64]!r}: {exc}") from None
        return frozenset(channels)


def _refusal(refusal: Any) -> tuple[int, str]:
    code = refusal.get("code") if isinstance(refusal, dict) else None
    reason = refusal.get("reason", "") if isinstance(refusal, dict) else None
    if not isinstance(code, int) or isinstance(code, bool) or not 4000 <= code <= 4999 or not isinstance(reason, str):
        raise HookFailed("'disconnect' must be {code: 4000-4999, reason: str}")
    # A close frame's reason is at most 123 bytes of UTF-8.
    return code, reason.encode()[:120].decode(errors="ignore")


def _refused_message(answer: dict[str, Any]) -> str:
    """The message of an ``{"error": {"message"}}`` answer; anything else is a failure."""
    error = answer.get("error")
    if not isinstance(error, dict):
        raise HookFailed("answer has neither 'result' nor 'error'")
    message = error.get("message", "refused by the application")
    return message[:200] if isinstance(message, str) and message else "refused by the application"


async def _post(session: aiohttp.ClientSession, url: str, timeout_s: float, body: dict[str, Any]) -> bytes:
    async with asyncio.timeout(timeout_s), session.post(url, data=orjson.dumps(body)) as response:
        if response.status != 200:
            raise HookFailed(f"HTTP {response.status}")
        return await _read_capped(response, MAX_ANSWER_BYTES)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise HookFailed(f"answer is longer than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
