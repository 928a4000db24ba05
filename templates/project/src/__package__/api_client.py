"""A client of the HTTP server API for any Python backend: standard library only, synchronous.

Usable from a Django view, a Celery task or a cron script without an event loop or an extra
dependency (``urllib.request``; no hand-written HTTP)::

    from myproject.api_client import ApiClient

    api = ApiClient()   # WS_API_URL (default http://127.0.0.1:8766) and the first of WS_API_KEYS
    api.publish("user:alice", {"text": "your order shipped"}, msg_id="order-42-shipped")

Each method is one ``POST /api/<method>`` (see ``openapi.yaml``) and returns its ``result``; a
failure raises :class:`ApiError` with the HTTP status and the error code. Retry a publish that
failed with a network error or ``broker_unavailable`` with the same ``msg_id``: the server
delivers it at most once within the idempotency window.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8766"


class ApiError(Exception):
    """The API answered with an error (``status`` 0: no answer at all, e.g. connection refused)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ApiClient:
    """One server API endpoint and key. Thread-safe: it keeps no connection state."""

    def __init__(self, url: str | None = None, key: str | None = None, *, timeout: float = 10.0) -> None:
        self.url = (url or os.environ.get("WS_API_URL") or DEFAULT_URL).rstrip("/")
        if key is None:
            keys = [k.strip() for k in os.environ.get("WS_API_KEYS", "").split(",") if k.strip()]
            key = keys[0] if keys else ""
        self.key = key
        self.timeout = timeout

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """``POST /api/<method>`` with ``params``; the ``result`` of the answer.

        Raises:
            ApiError: an error answer, or no answer (``status`` 0, code ``unreachable``).
        """
        body = json.dumps(params or {}).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is configuration, http(s) only
            f"{self.url}/api/{method}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-API-Key": self.key},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                return json.loads(reply.read())["result"]
        except urllib.error.HTTPError as exc:
            raise _error_of(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, "unreachable", str(exc)) from exc

    def publish(self, channel: str, data: Any, *, msg_id: str | None = None) -> dict[str, Any]:
        """``{seq, epoch, duplicate}``; ``duplicate`` is True for a retry of a ``msg_id`` already stored."""
        return dict(self.call("publish", _params(channel=channel, data=data, msg_id=msg_id)))

    def broadcast(self, channels: Sequence[str], data: Any, *, msg_id: str | None = None) -> list[dict[str, Any]]:
        """One entry per channel: ``{channel, result}`` or ``{channel, error}``."""
        result = self.call("broadcast", _params(channels=list(channels), data=data, msg_id=msg_id))
        return list(result["responses"])

    def presence(self, channel: str) -> list[dict[str, Any]]:
        return list(self.call("presence", {"channel": channel})["members"])

    def presence_stats(self, channel: str) -> dict[str, Any]:
        return dict(self.call("presence_stats", {"channel": channel}))

    def history(
        self,
        channel: str,
        *,
        since_seq: int = 0,
        epoch: str | None = None,
        limit: int = 100,
        reverse: bool = False,
    ) -> dict[str, Any]:
        """``{messages: [{seq, ts, data, sender}], epoch, last_seq, recovered}``."""
        params = _params(channel=channel, since_seq=since_seq, epoch=epoch, limit=limit, reverse=reverse)
        return dict(self.call("history", params))

    def disconnect(self, user: str, *, code: int = 4000, reason: str = "") -> None:
        """Close every connection of ``user`` on every instance with ``code`` (4000-4999)."""
        self.call("disconnect", {"user": user, "code": code, "reason": reason})

    def subscribe(self, user: str, channel: str) -> None:
        """Subscribe every connection of ``user`` to ``channel``; their clients get ``subscription.added``."""
        self.call("subscribe", {"user": user, "channel": channel})

    def unsubscribe(self, user: str, channel: str) -> None:
        self.call("unsubscribe", {"user": user, "channel": channel})

    def channels(self, pattern: str | None = None) -> dict[str, int]:
        """Active channels -> subscriber connections across every instance."""
        result = self.call("channels", _params(pattern=pattern))
        return {name: int(info["subscribers"]) for name, info in result["channels"].items()}

    def batch(self, commands: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Several calls in one request, in order: ``[(method, params), ...]`` -> one reply each
        (``{result}`` or ``{error}``)."""
        body = {"commands": [{"method": method, "params": params} for method, params in commands]}
        return list(self.call("batch", body)["replies"])


def _params(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _error_of(exc: urllib.error.HTTPError) -> ApiError:
    try:
        error = json.loads(exc.read())["error"]
        return ApiError(exc.code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError(exc.code, "http_error", str(exc.reason))
