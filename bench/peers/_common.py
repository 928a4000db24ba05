"""What every Python peer shares: flags, the bench's slice of wire protocol v1, JWT at the upgrade.

The peers are the servers a user would write or pick *instead of* a generated project, so they do
the least that still gives the same observable behaviour to the load generator: subscribe, publish
(one event to every member of the room, then an ack to the publisher) and ping, spoken as the
envelope of docs/runtime-contract.md §3. No validation, limits, seq or authorization per message:
that is the point of comparing against them. Encoding uses orjson, as a speed-minded user would.
"""

from __future__ import annotations

import argparse
import os
import resource
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import orjson

JWT_ALGORITHMS = ["HS256"]


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwt-secret", default="", help="verify ?access_token=<HS256 JWT> at the upgrade")
    parser.add_argument("--redis", default="", help="redis:// URL: bridge rooms across instances")
    parser.add_argument("--heartbeat", type=float, default=20.0, help="server ping interval, seconds")
    args = parser.parse_args()
    raise_fd_limit()
    return args


def raise_fd_limit() -> None:
    """10,000 idle connections need more descriptors than a login shell's default soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def token_ok(path: str, secret: str) -> bool:
    """True when JWT checks are off, or the query's ``access_token`` verifies (signature, exp)."""
    if not secret:
        return True
    tokens = parse_qs(urlsplit(path).query).get("access_token")
    if not tokens:
        return False
    try:
        jwt.decode(tokens[0], secret, algorithms=JWT_ALGORITHMS, options={"require": ["exp"]})
    except jwt.InvalidTokenError:
        return False
    return True


def response(request: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"v": 1, "type": "response", "action": request.get("action"), "id": request.get("id"), "payload": {}}
    )


def event(channel: str, payload: Any) -> bytes:
    return orjson.dumps(
        {"v": 1, "type": "event", "action": "message", "channel": channel, "payload": payload}
    )


def redis_channel(channel: str) -> str:
    return "bench:" + channel


def pid_note() -> None:
    """Print the PID the harness samples for CPU and memory (the peer may be started via taskset)."""
    print(f"PID {os.getpid()}", flush=True)
