"""Your RPC handlers: ``rpc.<name>`` requests are routed here. This module is yours to edit.

Register a coroutine with :func:`rpc`; it receives the caller's :class:`RpcContext` and the
request ``payload`` and returns the response payload (any JSON value). Raise :class:`RpcError`
for an error the client should see; any other exception becomes error ``internal`` and is logged.
Requests of one connection are handled one at a time, in order, so keep handlers short or hand
long work to a task of your own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RpcContext:
    """Who is calling. ``user`` is the token's ``sub`` (``None`` when anonymous)."""

    user: str | None
    conn_id: str
    channel: str | None


class RpcError(Exception):
    """An error for the client: ``code`` lands in ``error.code``, ``message`` in ``error.message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


Handler = Callable[[RpcContext, Any], Awaitable[Any]]
"""An RPC handler: ``async def handler(ctx, payload) -> response payload``."""

HANDLERS: dict[str, Handler] = {}
"""``name`` -> handler for ``rpc.<name>``."""


def rpc(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as the handler of ``rpc.<name>``."""

    def register(handler: Handler) -> Handler:
        HANDLERS[name] = handler
        return handler

    return register


@rpc("echo")
async def echo(ctx: RpcContext, payload: Any) -> Any:
    """Return the payload unchanged; an example and a liveness probe for clients."""
    return payload
